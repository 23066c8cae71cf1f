"""channel_indices against the official DCTNet tables; zigzag against the JPEG standard."""

import numpy as np
import pytest

from freqdet.dct import channel_indices, resolve_channels, validate_channels, zigzag_order

# The official release's selections, per component, written out in full.
OFFICIAL = {
    24: (
        [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27],
        [0, 1, 8, 9],
    ),
    32: (
        [0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 16, 17, 18, 19, 20, 24, 25, 26, 27, 32, 33, 34],
        [0, 1, 2, 8, 9],
    ),
    48: (
        [
            0,
            1,
            2,
            3,
            4,
            5,
            8,
            9,
            10,
            11,
            12,
            13,
            16,
            17,
            18,
            19,
            20,
            21,
            24,
            25,
            26,
            27,
            28,
            29,
            32,
            33,
            34,
            35,
            40,
            41,
            42,
            43,
        ],
        [0, 1, 2, 8, 9, 10, 16, 17],
    ),
    64: (
        [
            0,
            1,
            2,
            3,
            4,
            5,
            6,
            8,
            9,
            10,
            11,
            12,
            13,
            14,
            16,
            17,
            18,
            19,
            20,
            21,
            24,
            25,
            26,
            27,
            28,
            29,
            32,
            33,
            34,
            35,
            36,
            37,
            40,
            41,
            42,
            43,
            44,
            45,
            48,
            49,
            50,
            51,
            52,
            53,
        ],
        [0, 1, 2, 8, 9, 10, 16, 17, 24, 25],
    ),
}

# JPEG's zigzag order (ITU-T T.81 Figure A.6), as libjpeg's jpeg_natural_order table.
JPEG_NATURAL_ORDER = [
    0,
    1,
    8,
    16,
    9,
    2,
    3,
    10,
    17,
    24,
    32,
    25,
    18,
    11,
    4,
    5,
    12,
    19,
    26,
    33,
    40,
    48,
    41,
    34,
    27,
    20,
    13,
    6,
    7,
    14,
    21,
    28,
    35,
    42,
    49,
    56,
    57,
    50,
    43,
    36,
    29,
    22,
    15,
    23,
    30,
    37,
    44,
    51,
    58,
    59,
    52,
    45,
    38,
    31,
    39,
    46,
    53,
    60,
    61,
    54,
    47,
    55,
    62,
    63,
]


@pytest.mark.parametrize("n", sorted(OFFICIAL))
def test_square_is_the_official_table(n):
    luma, chroma = OFFICIAL[n]
    expected = luma + [64 + k for k in chroma] + [128 + k for k in chroma]
    assert len(expected) == n
    assert channel_indices(n, "square") == tuple(expected)
    assert channel_indices(n) == tuple(expected)


def test_all_channels():
    for pattern in ("square", "triangle"):
        assert channel_indices(192, pattern) == tuple(range(192))


def test_zigzag_is_jpegs():
    assert zigzag_order() == JPEG_NATURAL_ORDER


@pytest.mark.parametrize("n", sorted(OFFICIAL))
def test_triangle_keeps_counts_and_takes_a_zigzag_prefix(n):
    selection = channel_indices(n, "triangle")
    assert len(selection) == n and list(selection) == sorted(set(selection))
    luma, chroma = OFFICIAL[n]
    for component, count in enumerate((len(luma), len(chroma), len(chroma))):
        ks = [i - 64 * component for i in selection if i // 64 == component]
        assert sorted(ks) == sorted(JPEG_NATURAL_ORDER[:count])


def test_triangle_24_luma_is_the_lowest_diagonals():
    luma = [i for i in channel_indices(24, "triangle") if i < 64]
    # The first 15 zigzag entries are the whole diagonals u + v <= 4, the 16th starts u + v = 5.
    assert {k for k in luma if k // 8 + k % 8 <= 4} == {8 * u + v for u in range(5) for v in range(5 - u)}


@pytest.mark.parametrize(
    "bad, message",
    [
        ([], "at least one"),
        ([0, 192], "0..191"),
        ([-1], "0..191"),
        ([1.0], "integers"),
        ([True], "integers"),
        (["3"], "integers"),
        ([5, 3, 5], "repeated: \\[5\\]"),
    ],
)
def test_validate_refuses_bad_selections(bad, message):
    with pytest.raises(ValueError, match=message):
        validate_channels(bad)


def test_unknown_pattern_and_count_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="square"):
        channel_indices(24, "circle")
    with pytest.raises(ValueError, match="24, 32, 48, 64, 192"):
        channel_indices(25)


def test_resolve_accepts_counts_lists_and_numpy():
    assert resolve_channels(24) == channel_indices(24)
    assert resolve_channels(np.int64(32), "triangle") == channel_indices(32, "triangle")
    assert resolve_channels(np.array([130, 0, 64])) == (0, 64, 130)
