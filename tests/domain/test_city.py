"""City bundle loading: the sample loads, a broken bundle lists every problem, datums convert."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import shapely

from domain.city import CityError, load_city, parse_window
from domain.coords import convert


def test_sample_city_loads(city):
    assert city.timezone == "Asia/Shanghai" and city.metric_epsg == 4547
    kinds = {f.kind for f in city.fences}
    assert {"construction_site", "disposal_site"} <= kinds
    assert all(p.route.geom_type == "LineString" for p in city.permits)


def copy_city(city, tmp_path: Path) -> Path:
    target = tmp_path / "city"
    shutil.copytree(city.directory, target)
    return target


def test_every_problem_is_listed_with_its_id(city, tmp_path):
    d = copy_city(city, tmp_path)
    fences = json.loads((d / "fences.geojson").read_text())
    bowtie = [[[114.0, 22.5], [114.01, 22.51], [114.01, 22.5], [114.0, 22.51], [114.0, 22.5]]]
    fences["features"][0]["geometry"] = {"type": "Polygon", "coordinates": bowtie}
    fences["features"][1]["properties"]["kind"] = "parking"
    fences["features"][0]["properties"]["windows"] = ["25:00-06:00"]
    (d / "fences.geojson").write_text(json.dumps(fences, ensure_ascii=False))
    permits = json.loads((d / "permits.geojson").read_text())
    permits["features"][0]["properties"]["plate"] = "粤Z99999"
    permits["features"][1]["properties"]["valid_to"] = "2020-01-01T00:00:00"
    (d / "permits.geojson").write_text(json.dumps(permits, ensure_ascii=False))
    with (d / "vehicles.csv").open("a", encoding="utf-8") as f:
        f.write("粤B0BAD1,has space,C99\n")
    with pytest.raises(CityError) as e:
        load_city(d)
    text = "\n".join(e.value.problems)
    f0 = fences["features"][0]["properties"]["id"]
    f1 = fences["features"][1]["properties"]["id"]
    p0 = permits["features"][0]["properties"]["id"]
    p1 = permits["features"][1]["properties"]["id"]
    assert f"fences.geojson: {f0}: invalid geometry: Self-intersection" in text
    assert f"fences.geojson: {f1}: kind 'parking'" in text
    assert "is not HH:MM-HH:MM" in text
    assert f"permits.geojson: {p0}: plate '粤Z99999' is not in vehicles.csv" in text
    assert f"permits.geojson: {p1}: valid_to: '2020-01-01T00:00:00' has no UTC offset" in text
    assert "device_id 'has space' is not usable in a topic" in text
    assert len(e.value.problems) >= 6


def test_gcj02_bundle_is_converted_to_wgs84(city, tmp_path):
    d = copy_city(city, tmp_path)
    fences = json.loads((d / "fences.geojson").read_text())
    original = shapely.geometry.shape(fences["features"][0]["geometry"])
    shifted = shapely.transform(original, lambda xy: __import__("numpy").column_stack(
        convert(xy[:, 0], xy[:, 1], "wgs84", "gcj02")))
    fences["features"][0]["geometry"] = shapely.geometry.mapping(shifted)
    (d / "fences.geojson").write_text(json.dumps(fences, ensure_ascii=False))
    meta = (d / "city.toml").read_text().replace('crs = "wgs84"', 'crs = "gcj02"')
    (d / "city.toml").write_text(meta)
    loaded = load_city(d)
    assert shapely.equals_exact(loaded.fences[0].geometry, original, tolerance=1e-8)


@pytest.mark.parametrize(("text", "minutes"), [("07:00-09:30", (420, 570)),
                                               ("22:00-06:00", (1320, 360)),
                                               ("00:00-24:00", (0, 1440))])
def test_windows(text, minutes):
    assert parse_window(text) == minutes


@pytest.mark.parametrize("text", ["7:00-9:00", "24:30-01:00", "10:00-24:30", "x"])
def test_bad_windows(text):
    with pytest.raises(ValueError):
        parse_window(text)
