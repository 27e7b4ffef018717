"""`BoundedDict`: state kept in memory per key (rate buckets, cached API keys and receipts tokens, the group
commit's turns, callback circuits) that must not grow without bound however many keys clients make up."""

from collections import OrderedDict
from collections.abc import ItemsView, Iterator, MutableMapping, ValuesView
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedDict(MutableMapping[K, V]):
    """A dict of at most `max_size` entries: storing one more forgets the least recently used (read or written).
    For state where a forgotten key simply starts afresh (a full bucket, a cache miss, a closed circuit), so
    forgetting is never wrong, only less informed."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be positive, got {max_size}")
        self.max_size = max_size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def __getitem__(self, key: K) -> V:
        value = self._entries[key]
        self._entries.move_to_end(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def __delitem__(self, key: K) -> None:
        del self._entries[key]

    def __contains__(self, key: object) -> bool:
        return key in self._entries  # a look, not a use

    def __iter__(self) -> Iterator[K]:
        return iter(self._entries)

    def items(self) -> ItemsView[K, V]:  # looks, not uses
        return self._entries.items()

    def values(self) -> ValuesView[V]:
        return self._entries.values()

    def __len__(self) -> int:
        return len(self._entries)
