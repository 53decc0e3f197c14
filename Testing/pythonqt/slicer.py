"""The little of Slicer's ``slicer`` module that LungAICommon.job needs inside the PythonQt test host.

``app.slicerHome`` points at a folder laid out by ``make-pythonslicer`` (``bin/PythonSlicer`` is CTK's real
launcher), so the job starts its command exactly as in an installed Slicer.
"""

import os
import types

app = types.SimpleNamespace(slicerHome=os.environ["LUNGAI_TEST_SLICER_HOME"])
