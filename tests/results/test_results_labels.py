"""One spelling per backbone: what tables print is what compare reads back."""

from __future__ import annotations

import pytest

from sarfewshot.results.labels import backbone_label, parse_backbone_label, weights_match

SHA = "06d78786189d" + "0" * 52


def test_label_shows_the_weights_only_when_asked():
    assert backbone_label("sarjepa", SHA, False) == "sarjepa"
    assert backbone_label("sarjepa", SHA, True) == "sarjepa@06d78786189d"
    assert backbone_label("random", None, True) == "random@none"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("sarjepa", ("sarjepa", None)),
        ("sarjepa@06d78786189d", ("sarjepa", "06d78786189d")),
        ("sarjepa@06D78786", ("sarjepa", "06d78786")),  # the former compare spelling
        ("sarjepa [06d78786189d]", ("sarjepa", "06d78786189d")),  # the former table spelling
        ("random@none", ("random", "none")),
        # weight-less grid labels: the tail is an architecture, not a hash
        ("random@irpe_vit_micro_patch8", ("random@irpe_vit_micro_patch8", None)),
        ("random@irpe:patch=8,dim=128", ("random@irpe:patch=8,dim=128", None)),
        ("random@vit_tiny@abc123", ("random@vit_tiny", "abc123")),
    ],
)
def test_parse_round_trips(text, expected):
    assert parse_backbone_label(text) == expected


def test_every_printed_label_parses_back():
    for name, sha in (("sarjepa", SHA), ("random", None), ("random@vit_tiny", SHA)):
        name_back, prefix = parse_backbone_label(backbone_label(name, sha, True))
        assert name_back == name and weights_match(sha, prefix)
        assert not weights_match(None if sha else SHA, prefix)


def test_weights_match():
    assert weights_match(SHA, None) and weights_match(None, None)
    assert weights_match(SHA, "06d7") and not weights_match(SHA, "07")
    assert weights_match(None, "none") and not weights_match(SHA, "none")
