"""Planning decisions: which images a job must process, which folder takes new files."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from domain.changes import Doc
from domain.errors import NoSpace
from domain.planning import SourceImage, choose_folder, pages, plan_images
from domain.specs import DEFAULT_SPECS, RenditionSpec

SPECS = [DEFAULT_SPECS["cache"], DEFAULT_SPECS["thumbnail"]]


def rid() -> str:
    return uuid.uuid4().hex


def image() -> SourceImage:
    return SourceImage(rid(), f"{rid()}.jpg", 4_000_000, 1_700_000_000.5)


def rendition(img: SourceImage, spec: RenditionSpec, **override: Any) -> Doc:
    doc: Doc = {
        "_id": f"{img.image_id}:{spec.kind}",
        "image_id": img.image_id,
        "kind": spec.kind,
        "spec_hash": spec.hash,
        "source_size": img.size,
        "source_mtime": img.mtime,
        "deleted": False,
    }
    return {**doc, **override}


def current_renditions(*images: SourceImage) -> dict[tuple[str, str], Doc]:
    return {(i.image_id, s.kind): rendition(i, s) for i in images for s in SPECS}


# -- plan_images --------------------------------------------------------------------


def test_fully_current_images_are_skipped() -> None:
    # Given two images whose renditions are all current
    images = [image(), image()]
    renditions = current_renditions(*images)

    # When they are planned
    plan = plan_images(images, SPECS, renditions)

    # Then nothing is left to do
    assert (plan.todo, plan.current) == ([], 2)


@pytest.mark.parametrize(
    "stale",
    [
        pytest.param(None, id="missing"),
        pytest.param({"spec_hash": "0123456789ab"}, id="other spec"),
        pytest.param({"source_size": 1}, id="other source size"),
        pytest.param({"source_mtime": 1.0}, id="other source mtime"),
        pytest.param({"deleted": True}, id="deleted"),
    ],
)
def test_image_with_one_stale_rendition_is_kept(stale: dict[str, Any] | None) -> None:
    # Given a current image and one whose thumbnail is missing or stale
    fine, odd = image(), image()
    renditions = current_renditions(fine, odd)
    key = (odd.image_id, "thumbnail")
    if stale is None:
        del renditions[key]
    else:
        renditions[key] = {**renditions[key], **stale}

    # When both are planned
    plan = plan_images([fine, odd], SPECS, renditions)

    # Then only the stale one is kept
    assert (plan.todo, plan.current) == ([odd], 1)


def test_only_requested_kinds_are_checked() -> None:
    # Given an image whose thumbnail is missing but whose cache image is current
    img = image()
    renditions = current_renditions(img)
    del renditions[(img.image_id, "thumbnail")]

    # When only cache images are planned
    plan = plan_images([img], [DEFAULT_SPECS["cache"]], renditions)

    # Then it is current
    assert (plan.todo, plan.current) == ([], 1)


def test_force_keeps_every_image() -> None:
    # Given current images
    images = [image() for _ in range(3)]

    # When they are planned with force
    plan = plan_images(images, SPECS, current_renditions(*images), force=True)

    # Then every image is kept, in order
    assert (plan.todo, plan.current) == (images, 0)


def test_images_an_unfinished_job_will_make_are_not_planned_again() -> None:
    # Given a current image, and two missing ones of which one is queued in an unfinished job
    fine, queued, missing = image(), image(), image()
    renditions = current_renditions(fine)

    # When they are planned, with and without force
    plan = plan_images([fine, queued, missing], SPECS, renditions, queued={queued.image_id})
    forced = plan_images([fine, queued], SPECS, renditions, force=True, queued={queued.image_id})

    # Then only the missing one is left to do; force plans every image all the same
    assert (plan.todo, plan.current, plan.queued) == ([missing], 1, 1)
    assert (forced.todo, forced.queued) == ([fine, queued], 0)


def test_a_current_image_counts_as_current_even_when_queued() -> None:
    img = image()
    plan = plan_images([img], SPECS, current_renditions(img), queued={img.image_id})
    assert (plan.todo, plan.current, plan.queued) == ([], 1, 0)


def test_pages_split_ids() -> None:
    ids = [rid() for _ in range(5)]
    assert pages(ids, 2) == [ids[0:2], ids[2:4], ids[4:5]]
    assert pages([], 3) == [[]]


# -- choose_folder ----------------------------------------------------------------------


def folder(priority: int, capacity: int, used: int, **extra: Any) -> Doc:
    return {
        "_id": rid(),
        "priority": priority,
        "capacity_bytes": capacity,
        "bytes": used,
        "removed": False,
        **extra,
    }


def test_highest_priority_wins() -> None:
    # Given a roomy folder of low priority and a fuller one of high priority
    low, high = folder(1, 10_000, 0), folder(5, 10_000, 5_000)

    # When a folder is chosen
    # Then priority decides
    assert choose_folder([low, high], 100) is high


def test_most_free_space_breaks_a_priority_tie() -> None:
    # Given three folders of equal priority
    fuller, emptier, middle = (
        folder(3, 10_000, 6_000),
        folder(3, 10_000, 1_000),
        folder(3, 8_000, 2_000),
    )

    # When a folder is chosen
    # Then the one with most free bytes wins
    assert choose_folder([fuller, emptier, middle], 100) is emptier


def test_removed_full_and_near_full_folders_are_skipped() -> None:
    # Given high-priority folders that are removed, full, too small, or within 5% of full
    removed = folder(9, 10_000, 0, removed=True)
    full = folder(9, 10_000, 10_000)
    too_small = folder(9, 10_000, 9_000)  # 1,000 free, 2,000 needed
    near_full = folder(9, 100_000, 96_000)  # 4,000 free, more than needed, but under 5%
    usable = folder(1, 100_000, 50_000)

    # When a folder is chosen for 2,000 bytes
    chosen = choose_folder([removed, full, too_small, near_full, usable], 2_000)

    # Then only the usable one qualifies
    assert chosen is usable


def test_no_space_when_no_folder_fits() -> None:
    # Given only folders that cannot take the file
    folders = [folder(1, 1_000, 990), folder(2, 1_000, 0, removed=True)]

    # When a folder is chosen
    # Then NoSpace says so, with what to do
    with pytest.raises(NoSpace) as raised:
        choose_folder(folders, 100)
    assert raised.value.hint and "full" in str(raised.value)
    # And with no folder at all (or only removed ones), it says that instead
    for none in ([], [folder(2, 1_000, 0, removed=True)]):
        with pytest.raises(NoSpace, match="no cache folder is configured") as missing:
            choose_folder(none, 1)
        assert "imagecache folders add" in missing.value.hint


def test_capacity_zero_means_unlimited() -> None:
    # Given an unlimited folder that already holds a lot, and a limited one of lower priority
    unlimited = folder(2, 0, 10**15)
    limited = folder(1, 10_000, 0)

    # When a folder is chosen for a large file
    # Then the unlimited folder takes it
    assert choose_folder([unlimited, limited], 10**9) is unlimited
    assert choose_folder([folder(0, 0, 0)], 10**12)["capacity_bytes"] == 0


def test_a_rendition_of_an_older_content_version_is_not_current() -> None:
    # Given a rendition made from content version 0, and the source now at version 1
    from domain.planning import SourceImage, is_current
    from domain.specs import DEFAULT_SPECS

    spec = DEFAULT_SPECS["cache"]
    rendition = {"spec_hash": spec.hash, "source_size": 10, "source_mtime": 1.0}
    # Then it is current for version 0 (a missing version is 0), stale for version 1
    assert is_current(rendition, spec, SourceImage("a" * 32, "x.jpg", 10, 1.0, 0))
    assert not is_current(rendition, spec, SourceImage("a" * 32, "x.jpg", 10, 1.0, 1))
    assert is_current(
        {**rendition, "source_version": 1}, spec, SourceImage("a" * 32, "x", 10, 1.0, 1)
    )
