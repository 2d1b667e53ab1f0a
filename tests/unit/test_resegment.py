"""pipeline/diarize/resegment.py's rebuilding of turns from relabelled frames (the relabelling
itself runs on real speech: tests/test_diarize.py)."""

import numpy as np

from pipeline.diarize.resegment import _rebuilt
from pipeline.schema import Turn


def test_a_turn_is_cut_where_its_frames_change_voice_and_touching_pieces_join():
    turns = [Turn(0.0, 2.0, "A"), Turn(2.0, 3.0, "B"), Turn(2.5, 3.5, "A")]
    frames = np.full(400, -1)
    frames[100:200] = 1  # A's second second is B's voice
    frames[200:250] = 1  # B's own frames, kept
    rebuilt = _rebuilt(turns, ["A", "B"], frames)
    assert rebuilt == [Turn(0.0, 1.0, "A"), Turn(1.0, 3.0, "B"), Turn(2.5, 3.5, "A")]


def test_frames_without_a_vote_keep_their_turn():
    turns = [Turn(0.0, 1.0, "A"), Turn(1.2, 2.0, "B")]
    assert _rebuilt(turns, ["A", "B"], np.full(150, -1)) == turns
