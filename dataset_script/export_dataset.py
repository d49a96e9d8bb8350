"""Build the VocalSound Hub dataset repository from the official release (see README.md here).

A thin wrapper over ``vocalsound-hf export-dataset``, for maintainers who run scripts rather than the
installed command: ``python dataset_script/export_dataset.py --data-dir vs_release_16k.zip --out vocalsound``.
"""

from __future__ import annotations

import sys

from vocalsound_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["export-dataset", *sys.argv[1:]]))
