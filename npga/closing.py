"""A base for objects that hold a resource and are used as ``with Thing(...) as thing:``."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closing:
    """``with`` support for classes that define ``close()``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
