"""Run every SlicerLungAI module's self-test inside an installed Slicer, then exit with its status.

    Slicer --no-splash --no-main-window --testing \
        --additional-module-paths <build>/lib/Slicer-5.x/qt-scripted-modules \
        --python-script Testing/run_slicer_selftests.py [ModuleName ...]

Each module's ``ScriptedLoadableModuleTest`` uses only bundled data.
"""

import sys
import traceback
import unittest

import slicer

from lungai.modules import descriptors

names = sys.argv[1:] or [d.slicer_module for d in descriptors()]
failed = []
for name in names:
    try:
        slicer.selfTests[name]()
        print(f"PASSED {name}")
    except unittest.SkipTest as reason:  # Python dependencies missing: nothing is installed under --testing
        print(f"SKIPPED {name}: {reason}")
    except Exception:  # noqa: BLE001 - report every module, then fail
        traceback.print_exc()
        failed.append(name)
        print(f"FAILED {name}")
print(f"{len(names) - len(failed)} passed, {len(failed)} failed")
slicer.util.exit(1 if failed else 0)
