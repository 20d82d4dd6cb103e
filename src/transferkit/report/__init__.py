"""``transferkit report``: one self-contained HTML page about a bundle on labelled data (:mod:`.contents` gathers,
:mod:`.html` lays out, :mod:`.calibration` measures calibration and offers temperature scaling)."""

from .calibration import (
           apply_temperature,
           expected_calibration_error,
           fit_temperature,
           reliability,
           temperature_scaling,
)
from .contents import model_card, report_contents
from .html import render_html

__all__ = ["apply_temperature", "expected_calibration_error", "fit_temperature", "model_card", "reliability",
           "render_html", "report_contents", "temperature_scaling"]
