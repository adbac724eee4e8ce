"""The fleet: transport companies with plausible unique names, and their trucks — unique 粤B
plates and 12-digit JT/T 808 terminal numbers, in fleets of uneven size.
"""

from __future__ import annotations

import numpy as np

from simulator.citymap import BRAND_HEAD, BRAND_TAIL, BUSINESS, PLATE_LETTERS

#: (company id, name)
Company = tuple[str, str]
#: (plate, device id, company id)
Vehicle = tuple[str, str, str]


def draw_companies(rng: np.random.Generator, n: int) -> list[Company]:
    """Plausible transport-company names, unique."""
    brands = [h + t for h in BRAND_HEAD for t in BRAND_TAIL]
    combos = len(brands) * len(BUSINESS)
    picks = rng.choice(combos, size=min(n, combos), replace=False)
    names = [f"深圳市{brands[p // len(BUSINESS)]}{BUSINESS[p % len(BUSINESS)]}有限公司"
             for p in picks]
    names += [f"深圳市鹏城第{k + 1}渣土运输有限公司" for k in range(n - len(names))]
    width = max(2, len(str(n)))
    return [(f"C{i + 1:0{width}d}", name) for i, name in enumerate(names)]


def draw_vehicles(rng: np.random.Generator, n: int, companies: list[Company]) -> list[Vehicle]:
    """Unique 粤B plates and 12-digit JT/T 808 terminal numbers, uneven fleet sizes."""
    plates: dict[str, None] = {}
    while len(plates) < n:
        m = 2 * (n - len(plates)) + 8
        digits = rng.integers(0, 10, (m, 5)).astype(str)
        letters = np.array(list(PLATE_LETTERS))[rng.integers(0, len(PLATE_LETTERS), (m, 5))]
        n_letters = rng.choice(3, size=m, p=[0.55, 0.3, 0.15])
        use = (rng.random((m, 5)).argsort(1) < n_letters[:, None])
        chars = np.where(use, letters, digits)
        for row in chars:
            plates.setdefault("粤B" + "".join(row), None)
            if len(plates) == n:
                break
    devices: dict[str, None] = {}
    while len(devices) < n:
        m = 2 * (n - len(devices)) + 8
        head = np.array(["13", "15", "18", "14", "17"])[rng.integers(0, 5, m)]
        tail = rng.integers(0, 10**9, m)
        for h, t in zip(head, tail, strict=True):
            devices.setdefault(f"0{h}{t:09d}", None)
            if len(devices) == n:
                break
    floor = 3 if n >= 3 * len(companies) else 0
    weights = rng.gamma(2.0, 1.0, len(companies))
    sizes = floor + rng.multinomial(n - floor * len(companies), weights / weights.sum())
    owner = np.repeat(np.arange(len(companies)), sizes)
    rows = [(p, d, companies[int(c)][0]) for p, d, c in zip(plates, devices, owner, strict=True)]
    return sorted(rows, key=lambda r: (r[2], r[1]))
