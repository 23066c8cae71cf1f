"""What a weight conversion did with each key, so that nothing changes silently."""

from dataclasses import dataclass, field
from typing import List, Tuple


@dataclass
class Report:
    """What a conversion did with each key."""

    mapped: List[Tuple[str, str]] = field(default_factory=list)
    reinitialized: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)
    unmapped: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"mapped {len(self.mapped)} tensors"] + self.notes
        for title, keys in (
            ("re-initialised", self.reinitialized),
            ("dropped", self.dropped),
            ("not understood (left out)", self.unmapped),
        ):
            if keys:
                lines.append(f"{title} ({len(keys)}): " + ", ".join(keys))
        return "\n".join(lines)
