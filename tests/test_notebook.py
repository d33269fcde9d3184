"""notebooks/lab.ipynb: the lab's six parts and what the network learned, run top to bottom with this
package in its quick mode; kept in git without outputs."""

import nbformat
import pytest
from nbclient import NotebookClient
from runs import ROOT

pytestmark = pytest.mark.slow  # a Jupyter kernel that trains

NOTEBOOK = ROOT / "notebooks" / "lab.ipynb"
PARTS = [
    "I) Data reading and splitting",
    "II) Data visualisation",
    "III) Model architecture",
    "IV) Fitting",
    "V) Model evaluation",
    "VI) New Model Architecture & Evaluation",
    "VII) What the network learned",
]


def test_the_notebook_holds_the_six_parts_in_order_and_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    headings = [
        line[3:]
        for cell in notebook.cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if line.startswith("## ")
    ]
    assert headings == PARTS
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


def test_the_notebook_runs_in_its_quick_mode(tmp_path, mnist_dir):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source = f"QUICK = True\nDATA_DIR = {mnist_dir!r}"
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()  # raises on any cell's error
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    assert "60000 train samples" in text and "10000 test samples" in text
    assert "Total params: 1,199,882" in text and "Total params: 329,962" in text
    assert "Epoch 3/3: loss " in text and "Test accuracy:" in text and "New Model Error:" in text
    said = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    for chatter in ("Tip", "GPU available", "TPU available", "Seed set", "LeafSpec", "transfer_batch_to_device"):
        assert chatter not in said, said
    assert "weighted avg" in text
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    # samples, learning curves, confusion matrix, misclassified images, the ELU confusion matrix; then two
    # networks' filters, the ELU feature maps, and for each network its filters, feature maps and attributions
    assert figures == 5 + 2 + 1 + 2 * 3
    assert sorted(p.name for p in (tmp_path / "outputs" / "notebook").iterdir()) == ["baseline", "elu"]
