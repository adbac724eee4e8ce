"""Districts in the city bundle (issue #21, docs/city.md): ``kind: "district"`` features load
into City.districts and never into City.fences (the geofence index and the rules read only
those); bad districts are reported like bad fences; the generated sample city's districts
hold every site."""

from __future__ import annotations

import json
import pathlib
import shutil
import tempfile

import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.city import DISTRICT_KIND, City, CityError, load_city
from simulator.citygen import generate_city

SITE_KINDS = ("construction_site", "disposal_site", "transfer_dock")


def copy_city(city: City, tmp_path: pathlib.Path) -> pathlib.Path:
    target = tmp_path / "city"
    shutil.copytree(city.directory, target)
    return target


def districts_holding(city: City, point: shapely.Point) -> list[str]:
    return [d.id for d in city.districts if d.geometry.covers(point)]


def test_districts_are_kept_apart_from_the_fences(city):
    assert [d.id for d in city.districts] == [f"D{k:02d}" for k in range(1, 9)]
    assert all(d.kind == DISTRICT_KIND and d.name and d.name.endswith("片区")
               for d in city.districts)
    assert all(f.kind != DISTRICT_KIND for f in city.fences)
    assert not {d.id for d in city.districts} & {f.id for f in city.fences}
    # the rules' reference data is built from the fences alone
    from rules.reference import Reference

    reference = Reference.from_city(city)
    assert list(reference.fence_ids) == [f.id for f in city.fences]


def test_a_bundle_without_districts_still_loads(city, tmp_path):
    d = copy_city(city, tmp_path)
    doc = json.loads((d / "fences.geojson").read_text(encoding="utf-8"))
    doc["features"] = [f for f in doc["features"] if f["properties"]["kind"] != DISTRICT_KIND]
    (d / "fences.geojson").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    loaded = load_city(d)
    assert loaded.districts == [] and len(loaded.fences) == len(city.fences)


def test_districts_are_ordered_by_id_whatever_the_file_order(city, tmp_path):
    d = copy_city(city, tmp_path)
    doc = json.loads((d / "fences.geojson").read_text(encoding="utf-8"))
    doc["features"].reverse()
    (d / "fences.geojson").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    loaded = load_city(d)
    assert [x.id for x in loaded.districts] == [x.id for x in city.districts]
    assert [f.id for f in loaded.fences] == [f.id for f in reversed(city.fences)]


def test_every_bad_district_is_listed(city, tmp_path):
    d = copy_city(city, tmp_path)
    doc = json.loads((d / "fences.geojson").read_text(encoding="utf-8"))
    districts = [f for f in doc["features"] if f["properties"]["kind"] == DISTRICT_KIND]
    bowtie = [[[114.0, 22.5], [114.01, 22.51], [114.01, 22.5], [114.0, 22.51], [114.0, 22.5]]]
    districts[0]["geometry"] = {"type": "Polygon", "coordinates": bowtie}
    districts[1]["geometry"] = {"type": "Point", "coordinates": [114.0, 22.5]}
    districts[1]["properties"]["radius_m"] = 500  # a circle is a fence shape, not a district's
    del districts[2]["properties"]["name"]
    districts[3]["geometry"]["coordinates"][0][-1] = [0.0, 0.0]  # ring not closed
    districts[4]["properties"]["id"] = doc["features"][0]["properties"]["id"]  # a fence's id
    (d / "fences.geojson").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(CityError) as e:
        load_city(d)
    text = "\n".join(e.value.problems)
    ids = [f["properties"]["id"] for f in districts]
    assert f"fences.geojson: {ids[0]}: invalid geometry: Self-intersection" in text
    assert f"fences.geojson: {ids[1]}: geometry type 'Point' is not allowed here" in text
    assert f"fences.geojson: {ids[2]}: a district needs a name" in text
    assert f"fences.geojson: {ids[3]}: exterior ring: ring is not closed" in text
    assert f"fences.geojson: {ids[4]}: duplicate id" in text
    assert len(e.value.problems) == 5, text


def test_an_unknown_kind_names_district_among_the_kinds(city, tmp_path):
    d = copy_city(city, tmp_path)
    doc = json.loads((d / "fences.geojson").read_text(encoding="utf-8"))
    doc["features"][0]["properties"]["kind"] = "District"
    (d / "fences.geojson").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(CityError, match=r"kind 'District' is not one of .*, district"):
        load_city(d)


def test_every_sample_site_centroid_is_in_exactly_one_district(city):
    for f in city.fences:
        if f.kind in SITE_KINDS:
            assert len(districts_holding(city, f.geometry.centroid)) == 1, f.id


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1),
       scale=st.sampled_from([0.3, 0.5, 1.0]))
def test_every_generated_site_centroid_is_in_exactly_one_district(seed: int, scale: float):
    with tempfile.TemporaryDirectory() as d:
        counts = generate_city(pathlib.Path(d), seed=seed, scale=scale)
        city = load_city(d)
    assert counts["district"] == len(city.districts) >= 6
    sites = [f for f in city.fences if f.kind in SITE_KINDS]
    assert sites
    for f in sites:
        assert len(districts_holding(city, f.geometry.centroid)) == 1, (seed, f.id)
    union = shapely.union_all([x.geometry for x in city.districts])
    assert all(union.covers(p.route) for p in city.permits), seed
