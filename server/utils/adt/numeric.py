"""Mathematical functions beyond the core ones of :mod:`.functions`, as PostgreSQL's
utils/adt/float.c, int.c and numeric.c: ``cbrt``, ``factorial``, ``gcd`` / ``lcm``,
``degrees`` / ``radians``, trigonometry, ``atan2``, ``log(b, x)``, ``scale``,
``trim_scale``.  Registered into the function registry at import.
"""

from __future__ import annotations

import math
from decimal import Decimal

from pgbundle.server.errors import PgError
from pgbundle.server.utils.adt.functions import fn


@fn("cbrt", "float8", "float8")
def _cbrt(x: float) -> float:
    return math.copysign(abs(x) ** (1.0 / 3.0), x)


@fn("factorial", "int8", "numeric")
def _factorial(n: int) -> Decimal:
    if n < 0:
        raise PgError("2201E", "factorial of a negative number is undefined")
    return Decimal(math.factorial(n))


@fn("gcd", "int4,int4", "int4")
def _gcd(a: int, b: int) -> int:
    return math.gcd(a, b)


@fn("gcd", "int8,int8", "int8")
def _gcd8(a: int, b: int) -> int:
    return math.gcd(a, b)


@fn("lcm", "int4,int4", "int4")
def _lcm(a: int, b: int) -> int:
    return abs(a * b) // math.gcd(a, b) if a and b else 0


@fn("lcm", "int8,int8", "int8")
def _lcm8(a: int, b: int) -> int:
    return abs(a * b) // math.gcd(a, b) if a and b else 0


@fn("degrees", "float8", "float8")
def _degrees(x: float) -> float:
    return math.degrees(x)


@fn("radians", "float8", "float8")
def _radians(x: float) -> float:
    return math.radians(x)


for _name, _f in (("sin", math.sin), ("cos", math.cos), ("tan", math.tan), ("asin", math.asin),
                  ("acos", math.acos), ("atan", math.atan), ("sinh", math.sinh), ("cosh", math.cosh),
                  ("tanh", math.tanh)):
    fn(_name, "float8", "float8")(_f)


@fn("atan2", "float8,float8", "float8")
def _atan2(y: float, x: float) -> float:
    return math.atan2(y, x)


@fn("log", "numeric,numeric", "numeric")
def _log2(b: Decimal, x: Decimal) -> Decimal:
    if b <= 0 or x <= 0:
        raise PgError("2201E", "cannot take logarithm of a negative number" if b < 0 or x < 0
                      else "cannot take logarithm of zero")
    return (x.ln() / b.ln()).quantize(Decimal("1.0000000000000000"))


@fn("scale", "numeric", "int4")
def _scale(d: Decimal) -> int:
    if not d.is_finite():
        return 0
    exp = d.as_tuple().exponent
    assert isinstance(exp, int)          # a letter only for NaN and infinities
    return max(0, -exp)


@fn("trim_scale", "numeric", "numeric")
def _trim_scale(d: Decimal) -> Decimal:
    return d.normalize() if d != 0 else Decimal(0)
