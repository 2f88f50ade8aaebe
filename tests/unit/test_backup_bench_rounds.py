"""The backup benchmark's headline ratio: each round compared with itself, then the median,
so a burst of another process on a shared machine decides at most one round."""

from __future__ import annotations

import pytest

from tests.benchmarks.backups import Round, round_ratios


@pytest.mark.parametrize(
    ("rounds", "ratio", "over_alone", "met"),
    [
        # One round: the ratio of its maxima.
        ([Round(load=1.0, alone=10.0, ours=20.0, theirs=200.0)], 0.1, 10 / 190, 1),
        # A noisy round (ours hit by a burst) does not decide: the median of 0.05, 0.9, 0.08.
        (
            [
                Round(load=2.0, alone=10.0, ours=10.0, theirs=200.0),
                Round(load=9.0, alone=900.0, ours=900.0, theirs=1000.0),
                Round(load=3.0, alone=12.0, ours=16.0, theirs=200.0),
            ],
            0.08,
            0.0,  # 0, 0 and 4/188 over the writers alone
            2,
        ),
        # Ours under the writers-alone max: nothing of it is over the noise.
        ([Round(load=5.0, alone=50.0, ours=40.0, theirs=100.0)], 0.4, 0.0, 0),
    ],
)
def test_the_headline_ratio_is_the_median_of_each_rounds_own_ratio(
    rounds: list[Round], ratio: float, over_alone: float, met: int
) -> None:
    figures = round_ratios(rounds)
    assert figures["max stall ratio ours/pocketbase [<=0.1]"] == pytest.approx(ratio)
    assert figures["max stall over baseline ratio ours/pocketbase"] == pytest.approx(over_alone)
    assert figures["rounds at or under the target (0.1)"] == met


def test_a_round_names_its_load_and_its_writers_alone_max() -> None:
    text = Round(load=7.25, alone=25.5, ours=44.8, theirs=129.2).describe(2)
    assert text.startswith("round 2: load 7.2")
    assert "writers alone max 25.5 ms" in text and "ratio 0.347" in text


def test_a_round_whose_backlog_was_never_answered_is_left_out_of_the_medians() -> None:
    overloaded = Round(load=38.0, alone=44685.0, ours=44118.0, theirs=1787.0, kept=False)
    figures = round_ratios(
        [
            Round(load=31.0, alone=158.0, ours=260.0, theirs=4056.0),
            Round(load=47.0, alone=813.0, ours=159.0, theirs=1036.0),
            overloaded,
        ]
    )
    assert figures["max stall ratio ours/pocketbase [<=0.1]"] == pytest.approx(
        (260 / 4056 + 159 / 1036) / 2
    )
    assert figures["rounds left out (backlog not answered)"] == 1
    assert "left out" in overloaded.describe(3)
    none_kept = round_ratios([overloaded])
    assert (
        none_kept["max stall ratio ours/pocketbase [<=0.1]"]
        != none_kept["max stall ratio ours/pocketbase [<=0.1]"]
    )  # NaN: no comparison at all
