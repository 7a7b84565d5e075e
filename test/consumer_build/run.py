#!/usr/bin/env python3
"""Builds test/consumer (a separate Meson project using dependency('ensemble-client')) the
ways a user adopts this library, then runs its bot, which must finish a round trip.

    run.py MODE SOURCE_ROOT BUILD_ROOT

MODE
  wrap-git   subprojects/ensemble-client.wrap is packaging/ensemble-client.wrap, the file the
             README tells users to copy, with only url (file://SOURCE_ROOT) and revision (the
             commit HEAD names when the test starts) changed: proves that its [wrap-git] and
             [provide] sections work. Builds committed code, not the working tree. Skipped
             (77) when SOURCE_ROOT is not a git checkout.
  installed  `meson install --destdir` of BUILD_ROOT into a staging dir, then the consumer
             finds the library only through the installed pkg-config file (fallbacks off).
  cmake      the same staged install, found by test/consumer/CMakeLists.txt through the
             installed CMake package (find_package(ensemble-client), CMAKE_PREFIX_PATH):
             what a CMake project does.
  install-only
             configures SOURCE_ROOT as the README's install recipe does (tests, examples,
             benchmarks and fuzz disabled; configuring only, nothing is compiled) and checks
             that the build holds the libraries and the tools and nothing else, and that it
             would install them with the licence and the CMake package.

Every mode builds the whole consumer (its bot and its test), runs the bot, which must
finish a round trip against the in-process double, and runs the consumer's own tests
(`meson test` / `ctest`): bot-against-loopbackd, whose ensemble-loopbackd the consumer found
through the wrap's program_names, on PATH, or as the CMake package's ensemble::loopbackd.
In wrap-git mode the consumer's first build must compile nothing of this project but what
the consumer uses: the libraries it links and the ensemble-loopbackd its test names (no
test, example, benchmark, fuzz target, nor ensemble-keygen).

Each step's output is shown only when it fails; the timing of each step is printed.
"""
import glob
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

SKIP = 77
# -O0 without debug info: a consumer only has to prove that it builds and runs.
SETUP_ARGS = ["--buildtype=plain"]


class StepFailed(Exception):
    pass


def step(title, command, cwd=None, env=None):
    started = time.monotonic()
    done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace")
    elapsed = time.monotonic() - started
    print(f"[{elapsed:6.1f} s] {title}", flush=True)
    if done.returncode != 0:
        print(f"FAILED (exit {done.returncode}): {' '.join(map(str, command))}")
        print(done.stdout)
        raise StepFailed(title)
    return done.stdout


def meson():
    found = os.environ.get("MESON") or shutil.which("meson")
    if not found:
        raise StepFailed("meson is not on PATH")
    return [found]


def installed_build_args(build_root):
    """The parent build's sanitizers: an installed libensemble_proto.a built with ASan links
    only into an ASan program."""
    options = json.loads(step("read the parent build's options",
                              meson() + ["introspect", str(build_root), "--buildoptions"]))
    values = {o["name"]: o["value"] for o in options}
    if values["b_sanitize"] == "none":
        return []
    return [f"-Db_sanitize={values['b_sanitize']}", "-Db_lundef=false",
            "-Dcpp_args=" + " ".join(values["cpp_args"])]


# What a wrap consumer's first build may compile of this project: the libraries it links,
# and ensemble-loopbackd because the consumer's test names it (Meson builds what a test
# uses with everything else). Anything more (a test, an example, a benchmark, a fuzz target,
# ensemble-keygen) is work the bot's author did not ask for.
SUBPROJECT_USED = ("include/ensemble/proto/libensemble_proto.a.p/",
                   "src/testing/libensemble_testing.a.p/",
                   "src/testing/libensemble_double_proto.a.p/",
                   "ensemble-loopbackd.p/")
SUBPROJECT_EXTRAS = re.compile(r"^subprojects/ensemble-client/(test|examples|bench|fuzz)/")


def check_first_build(build):
    """The subproject's targets in the consumer's build.ninja, and what the first build
    compiled of them (.ninja_log)."""
    defined = set()
    for line in (build / "build.ninja").read_text().splitlines():
        if line.startswith("build subprojects/ensemble-client/"):
            defined.update(o for o in line[len("build "):].split(":", 1)[0].split()
                           if SUBPROJECT_EXTRAS.match(o))
    if defined:
        raise StepFailed("the consumer's build defines targets of the library's tests, examples, "
                         f"benchmarks or fuzz targets: {sorted(defined)[:5]}")
    prefix = "subprojects/ensemble-client/"
    compiled = set()
    for line in (build / ".ninja_log").read_text().splitlines()[1:]:
        output = line.split("\t")[3]
        if output.startswith(prefix) and output.endswith(".o"):
            compiled.add(output[len(prefix):])
    stray = sorted(o for o in compiled if not o.startswith(SUBPROJECT_USED))
    if stray:
        raise StepFailed(f"the consumer's first build compiled more of the library than it uses: {stray}")
    if not compiled:
        raise StepFailed("the consumer's first build compiled nothing of the library (is it the wrap?)")
    print(f"           first build compiled {len(compiled)} files of the library, all in what it "
          "uses (libraries, ensemble-loopbackd); no test, example, benchmark, fuzz target")


def build_and_run(project, build, setup_args, env=None, first_build_check=False):
    setup_args = SETUP_ARGS + setup_args
    out = step("configure the consumer", meson() + ["setup", str(build), str(project)] + setup_args,
               env=env)
    match = re.search(r"[Dd]ependency ensemble-client found: YES ([\d.]+)(.*)", out)
    if not match:
        print(out)
        raise StepFailed("configure did not report dependency ensemble-client as found")
    print(f"           dependency('ensemble-client') -> {match.group(1)}{match.group(2)}")
    step("build the consumer (meson compile: its bot, its test, the library they need)",
         meson() + ["compile", "-C", str(build)], env=env)
    if first_build_check:
        check_first_build(build)
    run_bot(build, env)
    out = step("meson test (bot-against-loopbackd)",
               meson() + ["test", "-C", str(build), "--print-errorlogs"], env=env)
    if not re.search(r"^Ok:\s+1\s*$", out, re.M):
        print(out)
        raise StepFailed("the consumer's bot-against-loopbackd test did not pass")


def run_bot(build, env=None):
    out = step("run consumer_bot", [str(build / "consumer_bot")], env=env)
    print("           " + out.strip())
    if "round trip ok" not in out:
        raise StepFailed("consumer_bot did not report a round trip")


def staged_install(build_root, stage):
    """`meson install --destdir` into `stage`; returns an environment whose pkg-config finds
    the staged .pc files."""
    step("meson install --destdir", meson() + ["install", "-C", str(build_root), "--no-rebuild",
                                               "--destdir", str(stage)])
    pcs = glob.glob(str(stage / "**" / "pkgconfig" / "ensemble-client.pc"), recursive=True)
    if len(pcs) != 1:
        raise StepFailed(f"expected one installed ensemble-client.pc, found {pcs}")
    licences = glob.glob(str(stage / "**" / "licenses" / "ensemble-client" / "LICENSE"), recursive=True)
    if len(licences) != 1 or "MIT License" not in pathlib.Path(licences[0]).read_text():
        raise StepFailed(f"expected the MIT licence in <datadir>/licenses/ensemble-client/, found {licences}")
    loopbackds = glob.glob(str(stage / "**" / "bin" / "ensemble-loopbackd"), recursive=True)
    if len(loopbackds) != 1:
        raise StepFailed(f"expected one installed ensemble-loopbackd, found {loopbackds}")
    env = dict(os.environ)
    env["PKG_CONFIG_PATH"] = os.path.dirname(pcs[0])
    env["PKG_CONFIG_SYSROOT_DIR"] = str(stage)  # the .pc names the prefix, not the stage
    # As for a user of the installed package: its bin directory is on PATH, where the
    # consumer's find_program('ensemble-loopbackd') looks.
    env["PATH"] = os.path.dirname(loopbackds[0]) + os.pathsep + env.get("PATH", "")
    return env


def build_and_run_cmake(project, build, build_root, stage):
    """test/consumer/CMakeLists.txt against the staged install's CMake package, found the way
    a user finds it: CMAKE_PREFIX_PATH names the install prefix (here, inside the stage)."""
    cmake = shutil.which("cmake")
    if not cmake:
        raise StepFailed("cmake is not on PATH (scripts/install-deps.sh installs it)")
    configs = glob.glob(str(stage / "**" / "cmake" / "ensemble-client" / "ensemble-client-config.cmake"),
                        recursive=True)
    if len(configs) != 1:
        raise StepFailed(f"expected one installed ensemble-client-config.cmake, found {configs}")
    # <prefix>/<libdir>/cmake/ensemble-client/ensemble-client-config.cmake, libdir one or two
    # levels deep: the prefix is the directory holding include/ensemble.
    prefix = pathlib.Path(configs[0]).parent
    while not (prefix / "include" / "ensemble").is_dir():
        if prefix == stage:
            raise StepFailed("no include/ensemble above the installed CMake package")
        prefix = prefix.parent
    # The parent build's sanitizers, as installed_build_args does for Meson.
    flags = []
    for arg in installed_build_args(build_root):
        if arg.startswith("-Db_sanitize="):
            flags.append("-fsanitize=" + arg.split("=", 1)[1])
        elif arg.startswith("-Dcpp_args="):
            flags.append(arg.split("=", 1)[1])
    step("cmake configure", [cmake, "-S", str(project), "-B", str(build), "-G", "Ninja",
                             f"-DCMAKE_PREFIX_PATH={prefix}",
                             "-DCMAKE_CXX_FLAGS=" + " ".join(flags)])
    step("cmake --build (consumer_bot, process_test)", [cmake, "--build", str(build)])
    run_bot(build)
    ctest = shutil.which("ctest")
    if not ctest:
        raise StepFailed("ctest is not on PATH (it comes with cmake)")
    out = step("ctest (bot-against-loopbackd, ensemble::loopbackd)",
               [ctest, "--test-dir", str(build), "--output-on-failure"])
    if "100% tests passed, 0 tests failed out of 1" not in out:
        print(out)
        raise StepFailed("the consumer's bot-against-loopbackd test did not pass under ctest")


# The README's install recipe (section "Installed, through pkg-config").
INSTALL_OPTIONS = ["--buildtype=release", "-Dtests=disabled", "-Dexamples=disabled",
                   "-Dbenchmarks=disabled", "-Dfuzz=disabled", "-Ddocs=disabled"]
INSTALL_ONLY_TARGETS = {"ensemble_proto", "ensemble_double_proto", "ensemble_testing",
                        "ensemble-keygen", "ensemble-loopbackd"}


def check_install_only(source_root, build):
    step("configure with the install recipe's options",
         meson() + ["setup", str(build), str(source_root)] + INSTALL_OPTIONS)
    targets = json.loads(step("meson introspect --targets", meson() + ["introspect", str(build), "--targets"]))
    compiled = {t["name"] for t in targets if t["type"] != "custom"}
    if compiled != INSTALL_ONLY_TARGETS:
        raise StepFailed(f"an install-only build compiles {sorted(compiled)}, "
                         f"not just {sorted(INSTALL_ONLY_TARGETS)}")
    tests = json.loads(step("meson introspect --tests", meson() + ["introspect", str(build), "--tests"]))
    if tests:
        raise StepFailed(f"an install-only build defines tests: {[t['name'] for t in tests][:5]}")
    installed = json.loads(step("meson introspect --installed",
                                meson() + ["introspect", str(build), "--installed"])).values()
    for wanted in ("/licenses/ensemble-client/LICENSE", "/bin/ensemble-loopbackd", "/bin/ensemble-keygen",
                   "/libensemble_proto.a", "/libensemble_testing.a", "/ensemble-client-config.cmake",
                   "/pkgconfig/ensemble-client-testing.pc", "/include/ensemble", "/include/ensemble/version.hpp"):
        if not any(path.endswith(wanted) for path in installed):
            raise StepFailed(f"an install-only build would not install ...{wanted}")
    print(f"           compiles {', '.join(sorted(compiled))}; no tests; installs them with the "
          "licence and the packages")


def main():
    mode, source_root, build_root = sys.argv[1], pathlib.Path(sys.argv[2]).resolve(), pathlib.Path(sys.argv[3]).resolve()
    with tempfile.TemporaryDirectory(prefix=f"ensemble-consumer-{mode}-") as tmp:
        tmp = pathlib.Path(tmp)
        project = tmp / "consumer"
        shutil.copytree(source_root / "test" / "consumer", project)
        build = tmp / "build"

        if mode == "wrap-git":
            if shutil.which("git") is None or subprocess.run(
                    ["git", "-C", str(source_root), "rev-parse", "HEAD"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
                print(f"{source_root} is not a git checkout (or git is missing); skipped")
                return SKIP
            # The commit the clone must land on, read before anything else can commit.
            want = subprocess.run(["git", "-C", str(source_root), "rev-parse", "HEAD"], text=True,
                                  stdout=subprocess.PIPE).stdout.strip()
            wrap = (source_root / "packaging" / "ensemble-client.wrap").read_text()
            local, n_url = re.subn(r"(?m)^url = .*$", f"url = file://{source_root}", wrap)
            local, n_rev = re.subn(r"(?m)^revision = .*$", f"revision = {want}", local)
            if n_url != 1 or n_rev != 1:
                raise StepFailed("packaging/ensemble-client.wrap lacks a url or revision line")
            (project / "subprojects").mkdir()
            (project / "subprojects" / "ensemble-client.wrap").write_text(local)
            build_and_run(project, build, ["--force-fallback-for=ensemble-client"],
                          first_build_check=True)
            # The ensemble-client subproject directory must be the clone, not something else.
            clone = project / "subprojects" / "ensemble-client"
            head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], text=True,
                                  stdout=subprocess.PIPE).stdout.strip()
            if head != want:
                raise StepFailed(f"the wrap checked out {head!r}, not {want!r}")
            print(f"           subproject cloned at {head[:12]} (HEAD of {source_root})")

        elif mode == "install-only":
            check_install_only(source_root, build)
        elif mode in ("installed", "cmake"):
            stage = tmp / "stage"
            env = staged_install(build_root, stage)
            if mode == "cmake":
                build_and_run_cmake(project, build, build_root, stage)
                return 0
            flags = step("pkg-config --cflags --libs ensemble-client",
                         ["pkg-config", "--cflags", "--libs", "ensemble-client"], env=env)
            flags = flags.strip()
            print("           " + (flags if len(flags) < 200 else flags[:200] + " ..."))
            if "-lensemble_proto" not in flags or f"-I{stage}" not in flags:
                raise StepFailed("pkg-config does not point into the staged install")
            testing_flags = step("pkg-config --libs ensemble-client-testing",
                                 ["pkg-config", "--libs", "ensemble-client-testing"], env=env)
            if "-lensemble_testing" not in testing_flags or "-lensemble_proto" not in testing_flags:
                raise StepFailed("ensemble-client-testing.pc does not link the double and the proto library")
            loopbackd = step("pkg-config --variable=loopbackd ensemble-client-testing",
                             ["pkg-config", "--variable=loopbackd", "ensemble-client-testing"], env=env).strip()
            staged = pathlib.Path(str(stage) + loopbackd) if not loopbackd.startswith(str(stage)) else pathlib.Path(loopbackd)
            if not loopbackd.endswith("/bin/ensemble-loopbackd") or not staged.is_file():
                raise StepFailed(f"pkg-config's loopbackd variable {loopbackd!r} names no installed ensemble-loopbackd")
            print(f"           loopbackd={loopbackd}")
            build_and_run(project, build, ["--wrap-mode=nofallback"] + installed_build_args(build_root),
                          env=env)
        else:
            print(f"unknown mode {mode!r}")
            return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StepFailed as e:
        print(f"consumer test failed: {e}")
        sys.exit(1)
