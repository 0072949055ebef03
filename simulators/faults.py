"""How a fleet misbehaves, by share of devices: the ways field devices and their links actually fail."""

from dataclasses import dataclass


@dataclass(frozen=True)
class FaultShares:
    """Each share is the fraction of the fleet (0–1) that shows the fault; faults can combine on one device."""

    outage: float = 0.08            # silent for a stretch of hours
    faulty: float = 0.05            # keeps talking but reports status=fault for a stretch
    flapping: float = 0.04          # misses about one hour in five
    not_collecting: float = 0.04    # a monitor that is on but sends no measurements
    clock_skew: float = 0.03        # device clock off by minutes (some beyond the 5-minute tolerance)
    duplicates: float = 0.03        # resends some heartbeats (QoS 1 retries, gateway replays)
    store_and_forward: float = 0.03  # buffers during a link outage, then delivers late and out of order
    malformed: float = 0.01         # firmware bugs: truncated JSON, wrong types, missing fields
    # Cameras reported by a VMS gateway rather than directly. Decides a synthetic province's devices.csv;
    # with --province, the registry's gateway_id column decides instead.
    gateway_cameras: float = 0.2

    def __post_init__(self) -> None:
        for name, share in self.__dict__.items():
            if not 0 <= share <= 1:
                raise ValueError(f"fault share {name}={share} must be between 0 and 1")

    @classmethod
    def none(cls) -> "FaultShares":
        return cls(**{name: 0.0 for name in cls.__dataclass_fields__})

    @classmethod
    def parse(cls, text: str) -> "FaultShares":
        """`outage=0.1,duplicates=0` over the defaults; unknown names are an error naming them."""
        values = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, share = part.partition("=")
            if name not in cls.__dataclass_fields__:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(cls.__dataclass_fields__)}")
            try:
                values[name] = float(share)
            except ValueError:
                raise ValueError(f"fault {name}: {share!r} is not a number") from None
        return cls(**values)
