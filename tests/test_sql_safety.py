"""No SQL is built by formatting values into strings: every execute/copy takes a constant, a psycopg.sql
composition, or a parameter list. Checked on the syntax tree of every module, tests and benchmarks included."""

import ast

from tests.layout import PACKAGES, ROOT, TOOLS

SQL_CALLS = {"execute", "executemany", "copy", "stream"}


def _formatted(node: ast.expr) -> bool:
    """An f-string, `"…" % x`, `"…".format(x)` or string concatenation with a non-constant."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return isinstance(node.left, ast.Constant | ast.JoinedStr | ast.BinOp) and not (
            isinstance(node.left, ast.Constant) and isinstance(node.right, ast.Constant))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return isinstance(node.func.value, ast.Constant)
    return False


def _offenders() -> list[str]:
    found = []
    for package in (*PACKAGES, *TOOLS):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in SQL_CALLS and node.args and _formatted(node.args[0])):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_sql_statement_is_string_formatted() -> None:
    assert _offenders() == []


def test_the_check_would_catch_a_formatted_statement() -> None:
    bad = ast.parse('conn.execute(f"SELECT * FROM t WHERE id = {x}")').body[0].value
    good = ast.parse('conn.execute("SELECT * FROM t WHERE id = %s", (x,))').body[0].value
    assert _formatted(bad.args[0]) and not _formatted(good.args[0])
