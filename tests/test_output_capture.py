"""Output capture: Python-level tees and descriptor-level capture (in real child processes),
exact pass-through to the terminal, exact restoration, long lines, junk, and fork."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from auto_helpers import PYTHON, auto_on, child_env, options  # noqa: F401  (auto_on: fixture)
from journal_helpers import rows
from comet_journal import Experiment
from comet_journal.recorder.capture import MAX_LINE_CHARS, LineSplitter
from comet_journal.recorder.output_capture import PythonCapture

pytestmark = pytest.mark.usefixtures("auto_on")


def output_lines(journal) -> list[dict]:
    """Every journaled output line, in offset order, with the row's context."""
    lines = []
    for row in rows(journal, "log_output"):
        for line in row["payload"]["outputLines"]:
            lines.append({**line, "context": row["payload"].get("context")})
    lines.sort(key=lambda line: line["offset"])
    return lines


def texts(journal, stderr: bool) -> list[str]:
    return [line["output"] for line in output_lines(journal) if line["stderr"] is stderr]


# --- the line splitter ------------------------------------------------------------------------

def test_line_splitter_keeps_newlines_and_partial_lines():
    s = LineSplitter()
    assert s.feed("a") == [] and s.feed("b\nc\n\nd") == ["ab\n", "c\n", "\n"]
    assert s.feed("") == [] and s.rest() == "d" and s.rest() == ""


def test_line_splitter_keeps_what_a_carriage_return_leaves_on_screen():
    s = LineSplitter()
    assert s.feed("\r 10%") == [] and s.feed("\r 50%") == [] and s.feed("\r100%\n") == ["\r100%\n"]
    assert s.feed("dos line\r") == [] and s.feed("\n") == ["dos line\r\n"]
    assert s.feed("a\rb\r\n") == ["\rb\r\n"]


def test_line_splitter_cuts_very_long_lines():
    s = LineSplitter()
    assert s.feed("x" * MAX_LINE_CHARS) == []
    out = s.feed("y" * (MAX_LINE_CHARS + 5))
    assert out == ["x" * MAX_LINE_CHARS, "y" * MAX_LINE_CHARS] and s.rest() == "yyyyy"
    out = s.feed("z" * (2 * MAX_LINE_CHARS + 1) + "\n")
    assert "".join(out) == "z" * (2 * MAX_LINE_CHARS + 1) + "\n"
    assert all(len(piece) <= MAX_LINE_CHARS + 1 for piece in out)
    # an endless progress bar does not grow the buffer
    for i in range(10_000):
        s.feed(f"\r{i:>50}")
    assert len(s.rest()) == 51


# --- Python-level capture, in this process -------------------------------------------------------

def test_lines_are_journaled_and_reach_the_terminal_unchanged(tmp_path, capsys):
    journal = tmp_path / "run.db"
    original_out, original_err = sys.stdout, sys.stderr
    started = int(time.time() * 1000)
    with Experiment(journal=str(journal), **options(auto_output_logging="simple")) as exp:
        assert sys.stdout is not original_out and sys.stderr is not original_err
        print("first line")
        print("two", "parts")
        sys.stdout.write("a\nb\npartial")
        sys.stdout.write(" end\n")
        print("to stderr", file=sys.stderr)
        sys.stdout.writelines(["w1\n", "w2\n"])
        with exp.train():
            print("in training")
        sys.stdout.write("no newline at the end")
        assert sys.stdout.isatty() == original_out.isatty()
        assert sys.stdout.encoding == original_out.encoding
    assert sys.stdout is original_out and sys.stderr is original_err
    print("after end")
    captured = capsys.readouterr()
    assert captured.out == ("first line\ntwo parts\na\nb\npartial end\nw1\nw2\nin training\n"
                            "no newline at the endafter end\n")
    assert captured.err == "to stderr\n"
    lines = output_lines(journal)
    assert [line["offset"] for line in lines] == list(range(len(lines)))
    assert texts(journal, False) == ["first line\n", "two parts\n", "a\n", "b\n",
                                     "partial end\n", "w1\n", "w2\n", "in training\n",
                                     "no newline at the end"]
    assert texts(journal, True) == ["to stderr\n"]
    assert [line["context"] for line in lines if line["output"] == "in training\n"] == ["train"]
    now = int(time.time() * 1000)
    assert all(started <= line["localTimestamp"] <= now for line in lines)


def test_streams_are_restored_on_an_exception(tmp_path):
    original_out, original_err = sys.stdout, sys.stderr
    with pytest.raises(ZeroDivisionError):
        with Experiment(journal=str(tmp_path / "run.db"), **options(auto_output_logging=True)):
            print("before the error")
            1 / 0
    assert sys.stdout is original_out and sys.stderr is original_err
    assert texts(tmp_path / "run.db", False) == ["before the error\n"]


def test_logging_handlers_on_the_streams_are_captured_and_restored(tmp_path):
    stream = sys.stderr
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("test_output_capture.user")
    log.addHandler(handler)
    log.propagate = False
    try:
        with Experiment(journal=str(tmp_path / "run.db"), **options(auto_output_logging="simple")):
            assert handler.stream is sys.stderr  # now the tee
            log.warning("from logging")
        assert handler.stream is stream
    finally:
        log.removeHandler(handler)
    assert texts(tmp_path / "run.db", True) == ["from logging\n"]


def test_junk_and_refused_writes_do_not_break_capture(tmp_path, monkeypatch):
    raw = io.BytesIO()
    terminal = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape",
                                write_through=True)
    monkeypatch.setattr(sys, "stdout", terminal)
    journal = tmp_path / "run.db"
    with Experiment(journal=str(journal), **options(auto_output_logging="simple")) as exp:
        sys.stdout.write("bad \udcff byte\n")  # what surrogateescape decoding produces
        with pytest.raises(TypeError):
            sys.stdout.write(b"bytes are refused, as by the real stream")
        print("nul \x00 and control \x1b[31m chars")
        print("long " + "L" * (MAX_LINE_CHARS + 10))
    stats = exp.end()
    assert stats["lost"] == 0 and stats["errors"] == 0
    assert raw.getvalue().startswith(b"bad \xff byte\nnul \x00 and control \x1b[31m chars\nlong ")
    lines = texts(journal, False)
    assert lines[:2] == ["bad \ufffd byte\n", "nul \x00 and control \x1b[31m chars\n"]
    assert "".join(lines[2:]) == "long " + "L" * (MAX_LINE_CHARS + 10) + "\n"
    assert len(lines) == 4


def test_nested_captures_unhook_in_any_order(tmp_path, capsys):
    original = sys.stdout
    first = Experiment(journal=str(tmp_path / "a.db"), **options(auto_output_logging="simple"))
    print("both")
    second = Experiment(journal=str(tmp_path / "b.db"), **options(auto_output_logging="simple"))
    print("both again")
    first.end()  # not on top: its tee stays in place, passing through
    print("second only")
    second.end()
    assert sys.stdout is original
    print("nobody")
    assert capsys.readouterr().out == "both\nboth again\nsecond only\nnobody\n"
    assert texts(tmp_path / "a.db", False) == ["both\n", "both again\n"]
    assert texts(tmp_path / "b.db", False) == ["both again\n", "second only\n"]


def test_capture_options_are_checked(tmp_path):
    journal = tmp_path / "run.db"
    for bad in (dict(auto_output_logging="everything"), dict(capture=3),
                dict(auto_output_logging="fd", capture="simple"),
                dict(log_env_variables="HOME"), dict(log_git_patch="yes")):
        with pytest.raises((TypeError, ValueError)):
            Experiment(journal=str(journal), **{**options(), **bad})
    assert not journal.exists()
    original = sys.stdout
    for off in (None, False):
        with Experiment(journal=str(journal), **options(auto_output_logging=off)):
            assert sys.stdout is original


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("restart", [True, False])
def test_python_capture_in_a_forked_child(tmp_path, restart):
    journal = tmp_path / "run.db"
    exp = Experiment(journal=str(journal), **options(auto_output_logging="simple",
                                                     restart_in_child=restart))
    capture = exp._auto.capture
    assert isinstance(capture, PythonCapture)
    sys.stdout.write("parent partial ")
    holding = threading.Event()
    release = threading.Event()

    def hold_the_lock():  # a thread in the middle of a print when the fork happens
        with capture._lock:
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    holding.wait(5)
    pid = os.fork()
    if pid == 0:
        try:
            print("from the child")  # would hang on the inherited lock without the fix
            exp.flush(10)
        finally:
            os._exit(0)
    release.set()
    holder.join()
    deadline = time.monotonic() + 10
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung printing")
        time.sleep(0.01)
    print("line")
    exp.end()
    lines = texts(journal, False)
    assert lines.count("parent partial line\n") == 1  # the partial line is the parent's
    assert lines.count("from the child\n") == (1 if restart else 0)


# --- descriptor-level capture, in real child processes ------------------------------------------

FD_SCRIPT = textwrap.dedent("""
    import ctypes, json, logging, os, subprocess, sys, warnings
    from comet_journal import Experiment
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() with threads running
    journal, facts_path = sys.argv[1], sys.argv[2]
    warnings = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("comet_journal.recorder").addHandler(handler)
    quiet = dict(log_env_details=False, log_git_metadata=False, log_git_patch=False,
                 log_code=False, keep_alive_interval=None)
    fds = lambda: [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (1, 2)]
    facts = {"before": fds()}
    exp = Experiment(journal=journal, capture="fd", **quiet)
    facts["during"] = fds()
    other = Experiment(journal=journal, auto_output_logging="fd", **quiet)
    facts["second"] = type(other._auto.capture).__name__
    facts["warnings"] = warnings
    other.end()
    print("python print", flush=True)
    os.write(1, b"os.write line\\n")
    libc = ctypes.CDLL(None)
    libc.puts(b"C puts line")
    libc.fflush(None)
    subprocess.run([sys.executable, "-c",
                    "import sys; print('grandchild out'); "
                    "print('grandchild err', file=sys.stderr)"],
                   check=True)
    subprocess.run(["sh", "-c", "printf 'shell no newline'"], check=True)
    os.write(1, b" + joined\\n")
    os.write(2, b"junk \\xff\\xfe\\x00 end\\n")
    os.write(1, b"y" * 300000 + b"\\n")
    pid = os.fork()
    if pid == 0:
        os.write(1, b"forked child\\n")
        os._exit(0)
    os.waitpid(pid, 0)
    sys.stdout.write("tail without newline")
    sys.stdout.flush()
    facts["threads"] = [t.name for t in __import__("threading").enumerate()]
    exp.end()
    exp.end()
    facts["after"] = fds()
    print("\\nafter end", flush=True)
    os.write(1, b"raw after end\\n")
    with open(facts_path, "w") as fh:
        json.dump(facts, fh)
""")


def run_script(tmp_path, script: str, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "script.py"
    path.write_text(script)
    return subprocess.run([PYTHON, str(path), *args], capture_output=True, timeout=60,
                          env=child_env(), cwd=str(tmp_path))


def test_fd_capture_sees_c_code_and_child_processes_and_restores_the_fds(tmp_path):
    journal, facts_path = tmp_path / "run.db", tmp_path / "facts.json"
    done = run_script(tmp_path, FD_SCRIPT, str(journal), str(facts_path))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    captured_out = (b"python print\nos.write line\nC puts line\ngrandchild out\n"
                    b"shell no newline + joined\n" + b"y" * 300000 + b"\nforked child\n"
                    b"tail without newline")
    assert done.stdout == captured_out + b"\nafter end\nraw after end\n"  # exact, in order
    assert done.stderr == b"grandchild err\njunk \xff\xfe\x00 end\n"
    facts = json.loads(facts_path.read_text())
    assert facts["after"] == facts["before"] != facts["during"]  # fds 1 and 2 restored
    assert facts["second"] == "PythonCapture"  # one fd capture per process
    assert "descriptor-level output capture is not available" in facts["warnings"][0]
    assert "recorder.output-capture" in facts["threads"]
    assert "".join(texts(journal, False)) == captured_out.decode()
    assert texts(journal, True) == ["grandchild err\n", "junk \ufffd\ufffd\x00 end\n"]
    assert all(len(line) <= MAX_LINE_CHARS + 1 for line in texts(journal, False))
    offsets = [line["offset"] for line in output_lines(journal)]
    assert offsets == list(range(len(offsets)))


CRASH_SCRIPT = textwrap.dedent("""
    import sys
    from comet_journal import Experiment
    exp = Experiment(journal=sys.argv[1], auto_output_logging=sys.argv[2], log_env_details=False,
                     log_git_metadata=False, log_git_patch=False, log_code=False,
                     keep_alive_interval=None)
    print("before the crash")
    raise RuntimeError("boom")
""")


@pytest.mark.parametrize("mode", ["fd", "simple"])
def test_an_uncaught_exception_is_captured_and_everything_ends_at_exit(tmp_path, mode):
    journal = tmp_path / "run.db"
    done = run_script(tmp_path, CRASH_SCRIPT, str(journal), mode)
    assert done.returncode == 1
    assert done.stdout == b"before the crash\n"
    assert done.stderr.startswith(b"Traceback") and b"\nRuntimeError: boom\n" in done.stderr
    assert texts(journal, False) == ["before the crash\n"]
    assert "".join(texts(journal, True)) == done.stderr.decode()
    assert "endTimeMillis" in rows(journal, "experiment_start_end_time")[-1]["payload"]


LATE_SCRIPT = textwrap.dedent("""
    import subprocess, sys
    from comet_journal import Experiment
    exp = Experiment(journal=sys.argv[1], auto_output_logging="fd", log_env_details=False,
                     log_git_metadata=False, log_git_patch=False, log_code=False,
                     keep_alive_interval=None)
    late = subprocess.Popen(["sh", "-c", "echo early; sleep 0.5; echo late; echo late >&2"])
    import time; time.sleep(0.2)
    exp.end()  # the child still holds the pipes: end() does not wait for it
    print("ended", flush=True)
    late.wait()
""")


def test_a_child_outliving_the_capture_still_reaches_the_terminal(tmp_path):
    journal = tmp_path / "run.db"
    started = time.monotonic()
    done = run_script(tmp_path, LATE_SCRIPT, str(journal))
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"early\nended\nlate\n" and done.stderr == b"late\n"
    assert texts(journal, False) == ["early\n"] and texts(journal, True) == []
    assert time.monotonic() - started < 10
