//! Unit tests of `table`.

use super::*;

#[test]
fn values_start_in_one_column_across_sections() {
    let mut t = Table::titled("run r1");
    t.row("requests", 100)
        .section("replies")
        .row("OK", 90)
        .row("INVALID_INPUT", 10);
    let text = t.render();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "run r1",
            "======",
            "requests         100",
            "replies",
            "  OK             90",
            "  INVALID_INPUT  10",
        ]
    );
}

#[test]
fn grid_columns_fit_their_widest_cell_and_numbers_align_right() {
    let mut g = Grid::new(["tier", "count", "p99 ms"]);
    g.row(["critical", "5", "1.25"])
        .row(["low", "12345", "10.00"]);
    let mut t = Table::new();
    t.section("latency").grid(g);
    assert_eq!(
        t.render(),
        "latency\n  \
             tier      count  p99 ms\n  \
             critical      5    1.25\n  \
             low       12345   10.00\n"
    );
}

#[test]
fn missing_cells_render_empty_and_lines_have_no_trailing_spaces() {
    let mut g = Grid::new(["a", "b"]);
    g.row(["x"]).row(["y", "1", "extra"]);
    let mut t = Table::new();
    t.grid(g).row("empty", "");
    let text = t.render();
    assert!(text.lines().all(|l| l == l.trim_end()), "{text:?}");
    assert!(text.contains("y  1  extra"), "{text}");
    assert!(text.contains("\nx\n"), "{text}");
}

#[test]
fn width_counts_characters_not_bytes() {
    let mut t = Table::new();
    t.row("first send → last reply", 1).row("µs", 2);
    let text = t.render();
    let cols: Vec<usize> = text
        .lines()
        .map(|l| l.chars().count() - 1) // the value is one digit
        .collect();
    assert_eq!(cols[0], cols[1], "{text}");
}

#[test]
fn appended_tables_share_the_value_column_and_keep_their_titles() {
    let mut a = Table::titled("load");
    a.row("sent", 5);
    let mut b = Table::titled("pipeline");
    b.section("replies").row("dead letters", 0);
    a.append(b);
    assert_eq!(
        a.render(),
        "load\n====\nsent            5\n\npipeline\n========\nreplies\n  dead letters  0\n"
    );
}
