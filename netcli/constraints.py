"""The constraint vocabulary of component arguments, in annotated_types, which pydantic reads
natively: a layer written `units: PositiveInt` gets its config key checked as > 0 with no
translation step. `nn`, `optim` and `config` all take their annotations from here; the
mathematics itself never looks at them."""

from typing import Annotated, Any

from annotated_types import Ge, Gt, Interval

PositiveInt = Annotated[int, Gt(0)]
NonNegativeInt = Annotated[int, Ge(0)]
PositiveInts = PositiveInt | list[PositiveInt]           # 3 or [3, 5]: one per spatial axis
NonNegativeInts = NonNegativeInt | list[NonNegativeInt]
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]
OpenUnitFloat = Annotated[float, Interval(gt=0, lt=1)]   # 0 < x < 1
UnitFloat = Annotated[float, Interval(ge=0, lt=1)]       # 0 <= x < 1
ActivationSpec = str | dict[str, Any]                    # 'relu' or {type: leaky_relu, alpha: 0.1}
