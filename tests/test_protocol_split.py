"""Statement splitting and placeholder counting (quotes, comments, dollar quotes)."""
from engine.sql.split import max_placeholder, split_statements


def test_split_respects_quotes_and_comments():
    sql = ("select 1; select ';' as x -- c;\n; /* ; /* nested ; */ */ select $$a;b$$, "
           "E'\\';', 'it''s;' ; ;")
    assert split_statements(sql) == [
        "select 1", "select ';' as x -- c;",
        "/* ; /* nested ; */ */ select $$a;b$$, E'\\';', 'it''s;'"]


def test_empty_and_comment_only():
    assert split_statements("") == []
    assert split_statements("  -- only a comment") == []
    assert split_statements(";;") == []
    assert split_statements("select 1") == ["select 1"]


def test_dollar_tags_and_placeholders():
    assert split_statements("select $fn$ a; b $fn$; select 2") == ["select $fn$ a; b $fn$",
                                                                   "select 2"]
    assert max_placeholder("select $1, '$5', $2 -- $9") == 2
    assert max_placeholder("select $$x$$, $3") == 3
    assert max_placeholder("select 1") == 0
