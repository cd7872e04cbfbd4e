"""Where BEIR-layout dataset folders live: one sub-folder per dataset partition."""


from pathlib import Path

import dagster as dg

from retriever_assets.core.naming import UnsafeNameError, path_inside, validate_name


class DataRootResource(dg.ConfigurableResource):
    """A folder whose sub-folders holding a corpus.jsonl are datasets; their names become partition keys."""

    path: str = "retriever_assets/bundled"

    def root(self) -> Path:
        return Path(self.path).expanduser().resolve()

    def dataset_dir(self, dataset: str) -> Path:
        return path_inside(self.root(), validate_name(dataset), root_kind="data root")

    def discover(self) -> tuple[list[str], list[str]]:
        """(valid dataset names, rejected folder names with reasons) found in the data root."""
        found, rejected = [], []
        root = self.root()
        if not root.is_dir():
            return found, [f"{root}: data root does not exist"]
        for child in sorted(root.iterdir()):
            if not child.is_dir() or not (child / "corpus.jsonl").is_file():
                continue
            try:
                validate_name(child.name)
                path_inside(root, child.name, root_kind="data root")
            except UnsafeNameError as exc:
                rejected.append(str(exc))
                continue
            found.append(child.name)
        return found, rejected
