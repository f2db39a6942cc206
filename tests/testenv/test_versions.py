"""The wrapper modules and versions.py pin the same releases (no cluster needed)."""

from __future__ import annotations

import re

import pytest

from tests.testenv import build


@pytest.mark.parametrize("component", [c for c in (*build.COMPONENTS, *build.NODE_COMPONENTS)
                                       if c.module], ids=lambda c: c.name)
def test_wrapper_requires_the_pinned_version(component: build.Component) -> None:
    gomod = component.wrapper_dir / "go.mod"
    assert build.wrapper_requirement(gomod, component.module) == component.version
    assert (gomod.parent / "go.sum").is_file(), "go.sum pins every hash: commit it"


def test_kubernetes_staging_modules_follow_the_release() -> None:
    gomod = (build.WRAPPERS / "kubernetes" / "go.mod").read_text()
    staging = re.findall(r"^\s*(k8s\.io/\S+) => (k8s\.io/\S+) (v\S+)$", gomod, re.MULTILINE)
    assert len(staging) >= 29
    expected = "v0." + build.KUBERNETES.version.removeprefix("v1.")
    assert {(old == new, version) for old, new, version in staging} == {(True, expected)}
