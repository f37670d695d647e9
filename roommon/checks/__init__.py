"""Check registry: the name used in a room's ``[rooms.ROOM.checks.NAME]`` table -> check.

Adding a check is adding its declaration (``declarations/NAME.py``: settings,
conditions, needed feeds), its implementation (``NAME.py``) and one line here.

:data:`CHECKS` maps a name to the check class, importing the implementation
(numpy, the signal code) only when a class is asked for; what the config and
``check-config`` need comes from :meth:`CheckRegistry.declared`, which never
imports an implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping

from roommon.checks.base import Check, CheckDeclaration
from roommon.checks.declarations.abp import ABP
from roommon.checks.declarations.cement import CEMENT
from roommon.checks.declarations.ecg import ECG
from roommon.checks.declarations.nibp import NIBP
from roommon.checks.declarations.numeric_limits import NUMERIC_LIMITS
from roommon.checks.declarations.spo2 import SPO2


class CheckRegistry(MutableMapping[str, type[Check]]):
    """Name -> check class, loaded on first use; declarations are at hand without loading."""

    def __init__(self, declarations: Iterable[CheckDeclaration]) -> None:
        self._declared = {d.name: d for d in declarations}
        self._loaded: dict[str, type[Check]] = {}

    def declared(self, name: str) -> CheckDeclaration | None:
        """The check's declaration, or None for an unknown name (nothing is imported)."""
        return self._declared.get(name)

    def declarations(self) -> Iterator[CheckDeclaration]:
        return iter(self._declared.values())

    def __getitem__(self, name: str) -> type[Check]:
        cls = self._loaded.get(name)
        if cls is None:
            cls = self._loaded[name] = self._declared[name].load()
        return cls

    def __setitem__(self, name: str, cls: type[Check]) -> None:
        self._declared[name] = CheckDeclaration.of(cls)
        self._loaded[name] = cls

    def __delitem__(self, name: str) -> None:
        del self._declared[name]
        self._loaded.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._declared

    def __iter__(self) -> Iterator[str]:
        return iter(self._declared)

    def __len__(self) -> int:
        return len(self._declared)


CHECKS = CheckRegistry([ECG, SPO2, NIBP, ABP, CEMENT, NUMERIC_LIMITS])
