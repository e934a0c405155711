"""The one-slide scan report (dashboard.scan_report): its decision line and opacity bars, by the module's
own colours in the regions its layout gives them."""
from __future__ import annotations

import numpy as np
import pytest

from dashboard.case_report import BAR_COLOURS, SIZE
from dashboard.scan_report import SIDE_COLOURS, scan_report
from core.knowledge.scan import summarise, with_zones
from tests.test_scan import hand_table


def test_scan_report_slide():
    t = with_zones(hand_table(np.arange(10) * 10.0, [100] * 10, [25] * 10, [0] * 10, np.linspace(0, 0.9, 10)), True)
    panels = [(np.full((64, 64), 0.5), f"slice {i}") for i in range(3)]

    def slide(threshold):
        return np.asarray(scan_report(t, summarise(t, "fusion", threshold), "scan", "run", ["fusion"], panels,
                                      ["gap: a and b"], "Research use only"))

    covid, not_covid = slide(0.5), slide(0.95)
    assert covid.shape == (SIZE[1], SIZE[0], 3)

    def header(a, colour):  # pixels of the decision line's colour in the header band
        return (a[70:135] == np.array(colour)).all(-1).sum()

    assert header(covid, BAR_COLOURS["COVID"]) > 500 and header(covid, BAR_COLOURS["non-COVID"]) == 0
    assert header(not_covid, BAR_COLOURS["non-COVID"]) > 500 and header(not_covid, BAR_COLOURS["COVID"]) == 0
    # The opacity bars (right of x = 1250): the right lung's is 25% of its track, the left lung has none
    right = (covid[150:370, 1250:] == np.array(SIDE_COLOURS["right"])).all(-1)
    assert right.any(0).sum() == pytest.approx(0.25 * 470, abs=3)
    assert not (covid[150:370, 1250:] == np.array(SIDE_COLOURS["left"])).all(-1).any()


def test_the_trust_line_is_drawn_above_the_footer():
    t = with_zones(hand_table(np.arange(4) * 10.0, [100] * 4, [5] * 4, [0] * 4, [0.2, 0.4, 0.6, 0.8]), True)
    s = summarise(t, "fusion", 0.5)

    def band(**kw):  # ink in the trust line's band, between the rule and the footer
        a = np.asarray(scan_report(t, s, "scan", "run", ["fusion"], [], [], "Research use only", **kw))
        return (a[946:972, :, :].sum(-1) < 200).sum()

    assert band() == 0 and band(trust="Trust: same call at every top share") > 200
