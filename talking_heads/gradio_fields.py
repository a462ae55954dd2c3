"""The Space's slider, radios and dropdown, whose values the handlers check themselves.

Gradio's own ``preprocess`` refuses a value out of a slider's range, or not among a radio's or
a dropdown's choices, before the event function runs, with a message that names no field
("Value 900 is greater than maximum value 300", "Value: 'dance' is not in the list of
choices: [...]"). These are the same components in the browser (``is_template``: the page
draws a plain slider, radio or dropdown, and the API describes them as before), but they pass
what the caller sent through unchanged, so that ``inputs.check_request`` /
``check_adapt_request`` (and ``AnimateOptions`` for the layout) answer, naming the field and
the values it accepts. A handler that takes one of these must check it before using it.

(Gradio writes a ``gradio_fields.pyi`` stub beside this file when it is imported, as for any
module that defines a component; it is not kept in git.)
"""

from __future__ import annotations

from typing import Any

import gradio as gr


class CheckedSlider(gr.Slider):
    is_template = True  # drawn and described as a gr.Slider

    def preprocess(self, payload: Any) -> Any:
        return payload


class CheckedRadio(gr.Radio):
    is_template = True  # drawn and described as a gr.Radio

    def preprocess(self, payload: Any) -> Any:
        return payload


class CheckedDropdown(gr.Dropdown):
    is_template = True  # drawn and described as a gr.Dropdown

    def preprocess(self, payload: Any) -> Any:
        return payload
