"""The OHIF build under a prefix, without a server: locating it, app-config.js, and the rewrites, on a
miniature build shaped like @ohif/app 3.13's dist/ (so these run where ``make viewer`` was not)."""

from __future__ import annotations

import pytest

from ctscreen.errors import CTScreenError
from serving.viewer.ohif import PrefixedBuild, ViewerUnavailable, app_config, check_prefix, locate_dist
from tests.serving.viewer.conftest import MINI_INDEX


def test_missing_build_names_make_viewer(tmp_path):
    with pytest.raises(ViewerUnavailable, match="run make viewer") as raised:
        locate_dist(tmp_path / "nowhere")
    assert isinstance(raised.value, CTScreenError)
    assert str(tmp_path / "nowhere") in str(raised.value)


def test_a_build_for_another_base_is_refused(mini_dist):
    (mini_dist / "index.html").write_text(MINI_INDEX.replace('window.PUBLIC_URL="/"', 'window.PUBLIC_URL="/ohif/"'))
    with pytest.raises(ViewerUnavailable, match="root-based OHIF build"):
        locate_dist(mini_dist)


@pytest.mark.parametrize("prefix", ["", "/", "viewer", "/a b", "/x/../y/", "/viewer?x"])
def test_prefix_is_a_plain_path_below_the_root(prefix):
    with pytest.raises(ValueError, match="viewer prefix"):
        check_prefix(prefix)


def test_prefix_loses_its_trailing_slash():
    assert check_prefix("/physician/viewer/") == "/physician/viewer"


def test_app_config_points_ohif_at_the_proxy():
    config = app_config("/viewer/")
    assert 'const root = window.location.origin + "/viewer";' in config
    assert "source.qidoRoot = root + '/dicom-web';" in config and "source.wadoRoot = root + '/dicom-web';" in config
    assert "source.wadoUriRoot = root + '/wado';" in config
    for setting in ('"routerBasename": "/viewer"', '"namespace": "@ohif/extension-default.dataSourcesModule.dicomweb"',
                    '"imageRendering": "wadors"', '"singlepart": "bulkdata,video"', '"omitQuotationForMultipartRequest": true',
                    '"showStudyList": true', '"option": "never"', '"ohif.tours"'):
        assert setting in config
    assert config.count('"namespace"') == 1
    assert "http" not in config.replace("window.location.origin", "")  # no absolute URL: nothing outside this origin


def test_files_naming_the_root_are_rewritten_for_the_prefix(mini_dist):
    build = PrefixedBuild(mini_dist, "/viewer")
    index = build.content(build.index).decode()
    assert 'window.PUBLIC_URL="/viewer/"' in index
    for reference in ('content="/viewer/assets/mstile.png"', 'href="/viewer/manifest.json"', 'src="/viewer/app-config.js"',
                      'src="/viewer/app.bundle.abc.js"', 'href="//cdn.example/x"'):
        assert reference in index
    bundle = build.content(build.lookup("app.bundle.abc.js")).decode()
    assert '__webpack_require__.p = "/viewer/";' in bundle and "'/viewer/dicom-microscopy-viewer/viewer.min.js'" in bundle
    assert build.content(build.lookup("app.bundle.css")) == b"@font-face{src:url(/viewer/font.woff2)}a{background:url(//cdn.example/y.png)}"
    assert build.content(build.lookup("plain.bundle.js")) is None  # served from disk as is
    assert build.content(build.lookup("assets/icon.png")) is None
    assert (mini_dist / "index.html").read_text() == MINI_INDEX  # dist/ itself untouched


def test_lookup_stays_inside_dist_and_skips_what_is_not_served(mini_dist):
    build = PrefixedBuild(mini_dist, "/viewer")
    assert build.lookup("assets/icon.png") == (mini_dist / "assets" / "icon.png").resolve()
    for relative in ("sw.js", "app-config.js", "assets/../sw.js", "../secret.txt", "assets/../../secret.txt", "/etc/passwd",
                     "assets", "", "missing.js", "a\\..\\secret.txt"):
        assert build.lookup(relative) is None, relative
