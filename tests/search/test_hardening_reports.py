"""Issue 9 item 8: report files never follow a symlink, and a campaign name never makes a folder outside the current one."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from studies.report import safe_dirname
from tests.search.conftest import one_line_error
from tests.studies.report_data import build_campaign


@pytest.mark.parametrize("name", ["..", ".", "...", "/etc", "../x", "a/../../b", "", "./", "~"])
def test_safe_dirname_is_one_plain_folder_below_the_current_one(name):
    folder = safe_dirname(name)
    assert folder not in ("", ".", "..") and not os.path.isabs(folder) and "/" not in folder
    assert not folder.startswith(".")


def test_report_out_replaces_a_symlink_instead_of_writing_through_it(run_cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'search.db'}"
    build_campaign(url, "demo", n_coarse=6, n_fine=4)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").symlink_to(victim)
    (out / "summary.json").symlink_to(tmp_path / "dangling.json")  # a link to nothing must not create its target

    result = run_cli("report", "--campaign", "demo", "--out", str(out), "--storage", url)

    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "dangling.json").exists()
    for name in ("report.md", "summary.json", "report.html"):
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 0
    assert (out / "report.md").read_text().startswith("# Search report: campaign demo")
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind


def test_compare_with_campaign_dotdot_writes_below_the_current_folder(run_cli, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    os.chdir(work)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_cli("compare", "--campaign", "..", "--repeats", "1", "--trials", "1", "--epochs", "1",
                     "--data", "digits", "--train-size", "100", "--hidden", "10", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written into the parent folder
    written = Path(safe_dirname(".."))
    assert (work / written / "compare.json").is_file() and (work / written / "repeats.png").is_file()


@pytest.mark.parametrize("name, folder", [
    ("digits", "digits"), ("ünï", "_n_-e975a529"), ("änä", "_n_-29b0af52"), ("-rf", "_rf-686c39ac"),
    ("a b", "a_b-c8687a08"), ("🙂", "_-d06f1525"),
])
def test_campaigns_with_different_names_never_share_a_report_folder_and_none_starts_with_a_dash(name, folder):
    assert safe_dirname(name) == folder


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_report_out_that_is_no_folder_is_refused_before_the_report_is_made(run_cli, tmp_path, kind):
    # once the plots were drawn and then "--out '/dev/null': cannot create the folder: File exists"
    url = f"sqlite:///{tmp_path / 'search.db'}"
    build_campaign(url, "demo", n_coarse=6, n_fine=4)
    out = tmp_path / "pipe"
    if kind == "fifo":
        os.mkfifo(out)
    else:
        out = Path(os.devnull)

    result = run_cli("report", "--campaign", "demo", "--out", str(out), "--storage", url)

    assert (result.exit_code, result.stderr) == (2, f"error: Invalid value for '--out': '{out}' is not a folder\n")
    assert result.stdout == ""


def test_a_file_where_the_default_report_folder_goes_is_refused_before_the_report_is_made(run_cli, tmp_path):
    # once the plots were drawn first, then "--out 'report-demo': cannot create the folder: File exists", naming an
    # option the command was not given
    url = f"sqlite:///{tmp_path / 'search.db'}"
    build_campaign(url, "demo", n_coarse=6, n_fine=4)
    (tmp_path / "report-demo").write_text("notes\n")

    result = run_cli("report", "--campaign", "demo", "--storage", url)

    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == ("error: cannot write into the default folder of --out: 'report-demo' is not a folder; "
                             "give --out FOLDER\n")
    assert (tmp_path / "report-demo").read_text() == "notes\n"


def test_a_file_where_the_default_compare_folder_goes_is_refused_before_any_stage_runs(run_cli, tmp_path):
    (tmp_path / "mine").write_text("notes\n")

    result = run_cli("compare", "--campaign", "mine", "--repeats", "1", "--trials", "1", "--epochs", "1",
                     "--train-size", "100", "--hidden", "10")

    assert result.exit_code == 2 and result.stderr == (
        "error: cannot write into the default folder of --out: 'mine' is not a folder; give --out FOLDER\n")
    assert not (tmp_path / "search.db").exists()


def test_a_folder_where_a_report_file_goes_fails_before_any_file_is_written_and_is_named(run_cli, tmp_path):
    # once summary.json and the plots were written, then "cannot write the report: Is a directory"
    url = f"sqlite:///{tmp_path / 'search.db'}"
    build_campaign(url, "demo", n_coarse=6, n_fine=4)
    out = tmp_path / "out"
    (out / "report.md").mkdir(parents=True)

    result = run_cli("report", "--campaign", "demo", "--out", str(out), "--storage", url)

    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (f"error: --out '{out}': report.md there is a folder, which the report "
                                              f"cannot replace; move it or give another --out")
    assert [p.name for p in out.iterdir()] == ["report.md"]


def test_a_data_path_that_is_not_utf8_is_written_into_the_report_as_its_bytes(run_cli, tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    name = os.fsdecode(b"d\xe9.npz")  # a Latin-1 file name
    np.savez(tmp_path / name, X=rng.normal(size=(120, 4)), y=np.arange(120) % 2)
    assert run_cli("coarse", "--data", name, "--trials", "2", "--epochs", "1", "--jobs", "1",
                   "--campaign", "c").exit_code == 0

    result = run_cli("report", "--campaign", "c", "--out", "r")

    assert result.exit_code == 0, result.output
    for report in ("report.md", "report.html"):
        assert bytes(tmp_path / name) in (tmp_path / "r" / report).read_bytes()


def _report_md_of_campaign(run_cli, tmp_path, name: str) -> str:
    """report.md of a campaign ``name`` of one short 2-trial coarse stage."""
    assert run_cli("coarse", "--trials", "2", "--epochs", "1", "--train-size", "200", "--jobs", "1",
                   "--campaign", name).exit_code == 0
    assert run_cli("report", "--campaign", name, "--out", "r").exit_code == 0
    return (tmp_path / "r" / "report.md").read_text()


def test_a_campaign_named_as_html_reaches_report_md_as_text(run_cli, tmp_path):
    # report.md carried the name as raw HTML: a Markdown viewer that renders HTML would have run its script
    name = "<img src=x onerror=alert(3)>"
    md = _report_md_of_campaign(run_cli, tmp_path, name)
    assert md.startswith("# Search report: campaign &lt;img src=x onerror=alert(3)>\n")
    outside_code = [part for line in md.splitlines() for k, part in enumerate(line.split("`")) if k % 2 == 0]
    assert not any("<" in part for part in outside_code) and md.count("&lt;img src=x onerror=alert(3)>") >= 2
    assert f"`search grid --campaign '{name}'`" in md  # a command in a code span is shown as typed, to paste back


@pytest.mark.parametrize("below", ["", "sub"])
def test_report_out_through_a_link_to_nothing_is_refused_before_the_report_is_made(run_cli, tmp_path, below):
    # once the plots were drawn first, then "--out 'gone': cannot create the folder: File exists"
    url = f"sqlite:///{tmp_path / 'search.db'}"
    build_campaign(url, "demo", n_coarse=6, n_fine=4)
    link = tmp_path / "gone"
    link.symlink_to(tmp_path / "nowhere")
    out = link / below if below else link

    result = run_cli("report", "--campaign", "demo", "--out", str(out), "--storage", url)

    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (f"error: Invalid value for '--out': '{link}' is a link to '{tmp_path / 'nowhere'}', "
                             f"which does not exist\n")
    assert not (tmp_path / "nowhere").exists()


def test_compare_out_through_a_link_to_nothing_is_refused_before_any_stage_runs(run_cli, tmp_path):
    # once every stage ran and was stored, then "--out 'gone': cannot write: File exists", exit 2
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")

    result = run_cli("compare", "--campaign", "mine", "--out", "gone", "--repeats", "1", "--trials", "1",
                     "--epochs", "1", "--train-size", "100", "--hidden", "10")

    assert result.exit_code == 2 and result.stderr == (
        f"error: Invalid value for '--out': 'gone' is a link to '{tmp_path / 'nowhere'}', which does not exist\n")
    assert not (tmp_path / "search.db").exists()


def test_a_report_that_does_not_fit_on_the_disk_leaves_the_folder_as_it_was(run_cli, tmp_path):
    # the disk full at report.html: the new report.md, summary.json and plots were left beside the old report.html,
    # exit 2 as if the input were bad
    import resource
    import signal

    url = f"sqlite:///{tmp_path / 'search.db'}"
    build_campaign(url, "demo", n_coarse=6, n_fine=4)
    build_campaign(url, "other", n_coarse=8, n_fine=4, seed=1)
    out = tmp_path / "out"
    assert run_cli("report", "--campaign", "demo", "--out", str(out), "--storage", url).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    limit = len(before["report.html"]) // 2
    assert max(len(data) for name, data in before.items() if name != "report.html") < limit // 2

    def filling_disk() -> None:  # files stop at ``limit`` bytes, as on a disk filling up
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    result = subprocess.run([sys.executable, "-m", "search", "report", "--campaign", "other", "--out", str(out),
                             "--storage", url], env=env, capture_output=True, text=True, timeout=300,
                            preexec_fn=filling_disk)

    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        1, f"error: --out '{out}': cannot write report.html: File too large; no file there was replaced")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old report whole, no temporary file


def test_a_report_never_overwrites_the_study_database_in_its_folder(run_cli, tmp_path):
    # a database named summary.json in the --out folder was replaced by the report's summary, exit 0
    (tmp_path / "out").mkdir()
    url = "sqlite:///out/summary.json"
    build_campaign(url, "demo", n_coarse=6, n_fine=4)
    database = (tmp_path / "out" / "summary.json").read_bytes()

    result = run_cli("report", "--campaign", "demo", "--out", "out", "--storage", url)

    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == ("error: --out out/summary.json is the --storage file; write to another "
                                              "file")
    assert (tmp_path / "out" / "summary.json").read_bytes() == database
    assert {p.name for p in (tmp_path / "out").iterdir()} <= {"summary.json", "summary.json-wal", "summary.json-shm"}
    # search compare's files: refused before its stages run
    (tmp_path / "out" / "summary.json").rename(tmp_path / "out" / "compare.json")
    compared = run_cli("compare", "--campaign", "c", "--out", "out", "--storage", "sqlite:///out/compare.json",
                       "--repeats", "1", "--trials", "1", "--epochs", "1")
    assert (compared.exit_code, compared.stderr) == (
        2, "error: --out out/compare.json is the --storage file; write to another file\n")
    assert (tmp_path / "out" / "compare.json").read_bytes() == database


def _rendered_tags(markdown: str) -> list[tuple[str, dict[str, str | None]]]:
    """The HTML tags a CommonMark viewer that renders HTML (GitHub's tables too) makes of ``markdown``."""
    from html.parser import HTMLParser

    from markdown_it import MarkdownIt

    tags: list[tuple[str, dict[str, str | None]]] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append((tag, dict(attrs)))

    Tags().feed(MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown))
    return tags


def test_a_campaign_name_with_a_backtick_reaches_report_md_as_text(run_cli, tmp_path):
    # a backtick in the name opened no code span, yet the report took what followed it for code and left its "<" as it
    # was: a Markdown viewer rendered <img ... onerror=...>, and the name's [link](javascript:...) as a link
    name = "a|b`<img src=x onerror=alert(1)> [l](javascript:alert(2)) ![i](x.gif)"
    md = _report_md_of_campaign(run_cli, tmp_path, name)

    tags = _rendered_tags(md)
    assert [(tag, attrs) for tag, attrs in tags if any(k.startswith("on") for k in attrs)] == []
    assert [attrs for tag, attrs in tags if tag == "a"] == []
    images = [attrs["src"] for tag, attrs in tags if tag == "img"]
    assert images and all(src.endswith(".png") for src in images)
    assert md.startswith("# Search report: campaign a|b\\`&lt;img src=x onerror=alert(1)> \\[l\\](javascript:alert(2)) "
                         "!\\[i\\](x.gif)\n")


def test_a_report_written_over_an_old_one_keeps_its_files_permissions(run_cli, tmp_path):
    # each file was replaced by one of 0666 minus the umask: a report its owner kept private (0600) became readable
    # by every user of the machine
    url = f"sqlite:///{tmp_path / 'search.db'}"
    build_campaign(url, "demo", n_coarse=6, n_fine=4)
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        assert run_cli("report", "--campaign", "demo", "--out", str(out), "--storage", url).exit_code == 0
        for path in out.iterdir():
            path.chmod(0o600)
        (out / "history.png").chmod(0o640)
        (out / "history.png").rename(out / "kept.png")
        (out / "history.png").symlink_to(out / "kept.png")  # a link is replaced by a file of its own
        assert run_cli("report", "--campaign", "demo", "--out", str(out), "--storage", url).exit_code == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes == {**{name: 0o600 for name in modes}, "history.png": 0o644, "kept.png": 0o640}


def test_a_report_or_compare_never_writes_its_plots_among_the_images_of_the_data_folder(run_cli, tmp_path):
    # search report --out photos/dark wrote scatter.png and the other plots into a class folder of the campaign's
    # data, which then trained on them or failed to load (images of different sizes); search compare likewise, after
    # running every stage
    from tests.search.test_predict import dark_and_light

    dark_and_light(tmp_path / "photos", 8)
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "photos").rglob("*"))
    options = ["--data", "photos", "--epochs", "1", "--batch-size", "4", "--trials", "2"]
    assert run_cli("coarse", *options, "--campaign", "c", "--jobs", "1").exit_code == 0
    data = tmp_path / "photos"
    assert one_line_error(run_cli("report", "--campaign", "c", "--out", "photos/dark", "--json")) == (
        f"error: --out photos/dark/scatter.png is in the campaign's --data folder {data}, which reads it as an "
        f"image; write it to another folder")
    assert one_line_error(run_cli("compare", *options, "--repeats", "1", "--campaign", "k", "--out", "photos")) == (
        f"error: --out photos/repeats.png is in the --data folder {data}, which reads it as an image; write it to "
        f"another folder")
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "photos").rglob("*")) == before
    assert "k/random-0" not in optuna.get_all_study_names("sqlite:///search.db")


def test_a_report_over_another_leaves_none_of_its_plots_behind(run_cli, tmp_path):
    # a report written over one of another campaign left the plots it does not draw (scatter.png, ranges.png) beside
    # its own, where they read as this campaign's
    import json

    base = ["--data", "spiral", "--trials", "3", "--epochs", "1", "--jobs", "1"]
    assert run_cli("coarse", *base, "--campaign", "calm").exit_code == 0
    assert run_cli("coarse", *base, "--campaign", "boom", "--lr", "10:100").exit_code == 0  # every trial explodes
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "scatter.png.txt").write_text("a file of the user's\n")
    calm = json.loads(run_cli("report", "--campaign", "calm", "--out", "r", "--json").stdout)["files"]
    boom = json.loads(run_cli("report", "--campaign", "boom", "--out", "r", "--json").stdout)["files"]
    assert {"scatter", "ranges"} <= set(calm) - set(boom)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(
        [*(Path(path).name for path in boom.values()), "scatter.png.txt"])
