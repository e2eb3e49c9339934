"""Annotations for component arguments. The config validator reads them from
constructor signatures (`units: PositiveInt`), so a config key is checked against
the component that will receive it; the mathematics itself never looks at them."""

from typing import Annotated

PositiveInt = Annotated[int, "> 0"]
NonNegativeInt = Annotated[int, ">= 0"]
PositiveFloat = Annotated[float, "> 0"]
NonNegativeFloat = Annotated[float, ">= 0"]
OpenUnitFloat = Annotated[float, "0 < x < 1"]
UnitFloat = Annotated[float, "0 <= x < 1"]
ActivationSpec = Annotated[str | dict, "activation"]
