import re
from html.parser import HTMLParser

import pytest

from jointspace.errors import InputError
from jointspace.evaluate.classification import classification_metrics
from jointspace.report.classification import write_classification_report

CLASSES = ["cat", "dog", "<script>alert(1)</script>"]
TRUTH = [0, 0, 0, 1, 1, 2, 2, 2, 2]
PREDICTED = [0, 1, 0, 1, 2, 2, 2, 0, 2]
GROUPS = ["a", "b", "a", "b", "a", "b", "a", "b", "a"]


class Cells(HTMLParser):
    """Collects the confusion cells (data-true, data-pred → count) and every script tag."""

    def __init__(self):
        super().__init__()
        self.cells: list[tuple[int, int, int]] = []
        self.scripts, self._at = 0, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.scripts += tag == "script"
        self._at = (int(a["data-true"]), int(a["data-pred"])) if "data-true" in a else None

    def handle_data(self, data):
        if self._at is not None:
            self.cells.append((*self._at, int(data)))
            self._at = None


def _parse(page: str) -> Cells:
    cells = Cells()
    cells.feed(page)
    return cells


def test_report_shows_numbers_names_and_exact_confusion(tmp_path):
    m = classification_metrics(TRUTH, PREDICTED, CLASSES, groups=GROUPS)
    path = write_classification_report(tmp_path / "r.html", m, CLASSES, title="digits <vqa>")
    page = path.read_text()
    assert path == tmp_path / "r.html"
    assert f"{100 * m['accuracy']:.2f}%" in page and f"{100 * m['macro_f1']:.2f}%" in page
    assert "<title>digits &lt;vqa&gt;</title>" in page
    for name in ("cat", "dog"):
        row = m["per_class"][name]
        cells = [f"{row[k]:.3f}" for k in ("precision", "recall", "f1")] + [str(row["support"])]
        assert f"<td class='words'>{name}</td>" + "".join(f"<td>{c}</td>" for c in cells) in page
    for group, v in m["per_group"].items():
        assert f"<td class='words'>{group}</td><td>{v['accuracy']:.3f}</td>" in page
    cells = _parse(page).cells
    n = len(CLASSES)
    assert cells == [(i, j, m["confusion"][i][j]) for i in range(n) for j in range(n)]
    assert sum(c for *_, c in cells) == len(TRUTH) and m["confusion"][0] == [2, 1, 0]
    # Shade = the count's share of its row: 2 of 3 cats predicted cat.
    assert "data-true='0' data-pred='0' title=" in page and "rgba(37,99,235,0.667)" in page


def test_hostile_class_name_is_escaped(tmp_path):
    m = classification_metrics(TRUTH, PREDICTED, CLASSES)
    page = write_classification_report(tmp_path / "r.html", m, CLASSES, title="t").read_text()
    assert "<script>" not in page and _parse(page).scripts == 0
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_several_splits_each_get_a_section(tmp_path):
    val = classification_metrics(TRUTH, PREDICTED, CLASSES)
    test = classification_metrics(TRUTH, TRUTH, CLASSES)
    metrics = {"val": val, "test": test, "history": [1, 2]}
    page = write_classification_report(tmp_path / "r.html", metrics, CLASSES, title="t")
    text = page.read_text()
    assert text.index("Split val") < text.index("Split test")
    assert "<td class='words'>test</td><td>1.000</td><td>1.000</td><td>9</td>" in text
    diagonal = [c for i, j, c in _parse(text).cells if i == j]
    assert diagonal == [2, 1, 3, 3, 2, 4]  # val's hits, then test's (all right)


def test_many_classes_list_the_most_confused_pairs(tmp_path):
    classes = [f"c{i}" for i in range(40)]
    truth = [i for i in range(40) for _ in range(3)]
    predicted = [(i + 1) % 40 if k == 0 else i for i in range(40) for k in range(3)]
    predicted[3:6] = [7, 7, 7]  # c1 always taken for c7: the worst pair
    m = classification_metrics(truth, predicted, classes)
    text = write_classification_report(tmp_path / "r.html", m, classes, title="t").read_text()
    assert "Most confused pairs (top 20)" in text and "<div class='matrix'>" in text
    header = "predicted as</th><th>count</th><th>share of true</th></tr>"
    first = re.search(re.escape(header) + "<tr>(.*?)</tr>", text)
    assert first and first.group(1) == (
        "<td class='words'>c1</td><td class='words'>c7</td><td>3</td><td>1.000</td>"
    )


def test_metrics_without_accuracy_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no accuracy"):
        write_classification_report(tmp_path / "r.html", {"val": {}}, CLASSES, title="t")
    assert not (tmp_path / "r.html").exists()


def test_report_renders_in_headless_chromium(tmp_path):
    from jointspace.report.browser import dump_dom

    m = classification_metrics(TRUTH, PREDICTED, CLASSES, groups=GROUPS)
    page = write_classification_report(tmp_path / "r.html", m, CLASSES, title="t")
    dom = dump_dom(page)
    assert "Confusion matrix" in dom and "Per group" in dom
    assert _parse(dom).cells == _parse(page.read_text()).cells
