"""The allocation MIP of oms, rebuilt from an `oms allocate` JSON instance for peer solvers.

Same cost model and formulation as oms-core: x[o,l,w] integer units, y[o,w] binary parcels,
demand rows, strong linking x <= ub * y, stock rows where orders compete. No drivers (the
benchmark instances have none) and no partial fulfilment.
"""

import json
import math
from decimal import Decimal

R = 6371.0


def haversine_km(a, b):
    la1, la2 = math.radians(a["lat"]), math.radians(b["lat"])
    dlat = la2 - la1
    dlng = math.radians(b["lng"] - a["lng"])
    h = math.sin(dlat / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin(dlng / 2) ** 2
    return 2.0 * R * math.asin(min(1.0, math.sqrt(h)))


def km_decimal(km):
    # oms rounds distances half away from zero to the metre.
    return Decimal(math.floor(km * 1000.0 + 0.5)) / Decimal(1000)


def load(path):
    with open(path) as f:
        return json.load(f)


def build(problem, orders=None):
    """Variables [(cost Decimal, ub, is_binary)], rows [(terms [(var, coef)], sense, rhs)]."""
    whs = problem["warehouses"]
    base = Decimal(problem["shipping"]["base_per_unit"])
    per_km = Decimal(problem["shipping"]["per_unit_km"])
    orders = problem["orders"] if orders is None else orders
    cols, rows = [], []
    draws = {}
    for o in orders:
        links = {}
        for line in o["lines"]:
            sku, q = line["sku"], line["quantity"]
            demand = []
            for wi, w in enumerate(whs):
                on_hand = w.get("stock", {}).get(sku, 0)
                ub = min(q, on_hand)
                if ub == 0:
                    continue
                km = km_decimal(haversine_km(w["location"], o["customer_location"]))
                cost = Decimal(w.get("item_cost", {}).get(sku, "0")) + base + per_km * km
                x = len(cols)
                cols.append((cost, ub, False))
                demand.append((x, 1.0))
                links.setdefault(wi, []).append((x, ub))
                d = draws.setdefault((wi, sku), [[], 0])
                d[0].append(x)
                d[1] += ub
            rows.append((demand, "=", q))
        for wi, xs in links.items():
            y = len(cols)
            cols.append((Decimal(whs[wi].get("parcel_cost", "0")), 1, True))
            for x, ub in xs:
                rows.append(([(x, 1.0), (y, -float(ub))], "<=", 0))
    for (wi, sku), (xs, ub) in draws.items():
        on_hand = whs[wi]["stock"][sku]
        if ub > on_hand:
            rows.append(([(x, 1.0) for x in xs], "<=", on_hand))
    return cols, rows


def exact_cost(cols, values):
    return sum((c * int(round(v)) for (c, _, _), v in zip(cols, values)), Decimal(0))


def percentile(sorted_ms, p):
    if not sorted_ms:
        return 0.0
    rank = math.ceil(p / 100.0 * len(sorted_ms))
    return sorted_ms[max(0, min(len(sorted_ms) - 1, rank - 1))]
