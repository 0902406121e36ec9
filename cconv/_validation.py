"""One validator for the integer arguments of ops and layers: sizes, strides, dilation,
groups, counts and padding modes.

Rules (the same in :mod:`cconv.ops` and :mod:`cconv.layers`):

* an int (any ``numbers.Integral``) is accepted; a bool, a float, a string or ``None`` raises
  ``TypeError`` naming the argument, also inside a pair;
* a tuple or list of the wrong length raises ``ValueError`` (the right type, a wrong value);
* a value below the minimum (1 for sizes, strides, dilation, groups and counts) raises
  ``ValueError`` naming the argument.

``where`` prefixes the message (``"conv2d: "`` or ``"Conv2D: "``).
"""

import numbers

INDEX_LIMIT = 2 ** 62   # the compiled core's indices are int64; larger sizes overflow them

__all__ = ["is_int", "check_int", "normalize_pair", "normalize_padding_mode", "INDEX_LIMIT"]


def is_int(value):
    """True for ints (numpy's too), False for bools and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _prefix(where):
    return f"{where}: " if where else ""


def check_int(value, name, where="", minimum=1):
    """``value`` as a Python int ``>= minimum``.

    Raises:
        TypeError: not an int (a bool or a float included). ValueError: below ``minimum``.
    """
    want = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    if not is_int(value):
        raise TypeError(f"{_prefix(where)}{name} must be {want}, got {name}={value!r}")
    if value < minimum:
        raise ValueError(f"{_prefix(where)}{name} must be {want}, got {name}={value!r}")
    return int(value)


def normalize_pair(value, name, where="", minimum=1):
    """An int or a pair of ints -> a pair of Python ints, each in ``[minimum, 2**62)``.

    Raises:
        TypeError: not an int or a pair of ints. ValueError: a value out of range.
    """
    what = f"{_prefix(where)}{name} must be an int or a pair of ints, got {value!r}"
    if is_int(value):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) != 2:
        raise ValueError(what)
    elif isinstance(value, (tuple, list)) and all(is_int(v) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(what)
    if min(pair) < minimum:
        want = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{_prefix(where)}{name} must be {want}, got {value!r}")
    if max(pair) >= INDEX_LIMIT:
        raise ValueError(
            f"{_prefix(where)}{name} {value!r} is too large (each value must be < 2**62)"
        )
    return pair


def normalize_padding_mode(padding, where=""):
    """``"valid"`` or ``"same"`` (any case) -> lower case.

    Raises:
        ValueError: any other string. TypeError: not a string.
    """
    if not isinstance(padding, str):
        raise TypeError(f'{_prefix(where)}padding must be "valid" or "same", got {padding!r}')
    mode = padding.lower()
    if mode not in ("valid", "same"):
        raise ValueError(f'{_prefix(where)}padding must be "valid" or "same", got {padding!r}')
    return mode
