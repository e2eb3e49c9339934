"""Gradient cases of the recurrent layers, for the shared parametrized test (tests/gradient_cases.py).

RECURRENT_LAYER_CASES has the shape of LAYER_CASES: {name: [factory, ...]}, each factory
returning (layer, per-example input shape (T, D)); the test adds the batch axis N.
Several time steps throughout; both output modes. The shared test compares with finite
differences of the full objective sum(r * y), so every case here has full BPTT (bptt None,
or bptt >= T, which is the same); truncated BPTT (bptt < T) is checked against its own,
truncated objective in tests/test_recurrent_layers.py.
"""

from __future__ import annotations

from netcli.nn import LAYERS


def _case(name, units, T, D, **kwargs):
    return lambda: (LAYERS.get(name)(units, **kwargs), (T, D))


RECURRENT_LAYER_CASES = {
    "rnn": [
        _case("rnn", 4, 5, 3),                                      # many-to-one, full BPTT
        _case("rnn", 3, 5, 2, return_sequences=True),               # many-to-many
        _case("rnn", 3, 4, 2, return_sequences=True, bptt=4),       # bptt = T: full BPTT
    ],
    "lstm": [
        _case("lstm", 4, 5, 3),
        _case("lstm", 3, 5, 2, return_sequences=True),
        _case("lstm", 2, 4, 3, bptt=9),                             # bptt > T: full BPTT
    ],
    "gru": [
        _case("gru", 4, 5, 3),
        _case("gru", 3, 5, 2, return_sequences=True),
        _case("gru", 2, 4, 3, return_sequences=True, bptt=4),
    ],
}
