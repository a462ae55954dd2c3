"""Gradio Space entry point (UI only; the work happens in talking_heads.pipeline)."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Talking Heads") as demo:
        gr.Markdown(
            "# Talking Heads\nFew-shot talking-head videos (Zakharov et al., ICCV 2019). "
            "The animation pipeline is being built; this page is a placeholder."
        )
    return demo


if __name__ == "__main__":
    build_demo().queue(default_concurrency_limit=1).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0")
    )
