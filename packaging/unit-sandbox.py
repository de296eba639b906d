#!/usr/bin/python3
"""Runs a command under the system-call sandbox a systemd unit declares.

usage: unit-sandbox.py UNIT COMMAND [ARGS...]

The package check runs the installed gateway without systemd (CI has no
init), so the unit's SystemCallFilter= and MemoryDenyWriteExecute= would
never meet the code: a dependency that started to call something outside
@system-service (or inside @privileged/@resources) would fail only on a
Pi, as EPERM. This applies them as systemd does, with seccomp, from the
unit's own lines, then execs COMMAND (same PID, so signals reach it).

Denials are also logged by the kernel (`dmesg`: audit type=1326 with the
syscall number) where the kernel keeps that log.
"""
import errno
import os
import subprocess
import sys

import seccomp  # Debian: python3-seccomp


def expand(name, seen):
    """A syscall or @group as `systemd-analyze syscall-filter` lists it."""
    if not name.startswith("@"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter", name],
        capture_output=True, text=True, check=True,
    ).stdout
    out = set()
    for line in listing.splitlines()[1:]:
        entry = line.strip()
        if entry and not entry.startswith("#"):
            out |= expand(entry, seen)
    return out


def unit_settings(path):
    allow, deny, mdwe, error = set(), set(), False, errno.EPERM
    for raw in open(path, encoding="utf-8"):
        line = raw.strip()
        key, _, value = line.partition("=")
        if key == "SystemCallFilter":
            names = value.strip()
            target = allow
            if names.startswith("~"):
                target, names = deny, names[1:]
            for name in names.split():
                target |= expand(name, set())
        elif key == "MemoryDenyWriteExecute":
            mdwe = value.strip() in ("yes", "true", "1", "on")
        elif key == "SystemCallErrorNumber":
            error = getattr(errno, value.strip())
    return allow - deny, mdwe, error


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    allowed, mdwe, error = unit_settings(sys.argv[1])
    if not allowed:
        sys.exit(f"{sys.argv[1]}: no SystemCallFilter= allow list")
    f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(error))
    f.set_attr(seccomp.Attr.CTL_LOG, 1)
    # systemd's MemoryDenyWriteExecute: no mapping both writable and
    # executable, and none made executable later. libseccomp refuses an
    # unconditional rule beside conditional ones, so these three are
    # allowed only on the conditions that pass.
    conditional = {"mmap", "mprotect", "pkey_mprotect"} if mdwe else set()
    for name in sorted(allowed - conditional):
        try:
            f.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError):
            pass  # a syscall this architecture does not have
    if mdwe:
        write, execute = 2, 4  # PROT_WRITE, PROT_EXEC
        for prot in (0, write, execute):
            f.add_rule(seccomp.ALLOW, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, write | execute, prot))
        for name in ("mprotect", "pkey_mprotect"):
            f.add_rule(seccomp.ALLOW, name, seccomp.Arg(2, seccomp.MASKED_EQ, execute, 0))
    f.load()
    os.execv(sys.argv[2], sys.argv[2:])


if __name__ == "__main__":
    main()
