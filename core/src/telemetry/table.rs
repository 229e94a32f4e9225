//! A small text table for the reports a person reads at the end of a run (`kbatch serve`,
//! `kbatch bench`, `kbatch demo`): label/value rows under optional section headings, grids (a
//! header row over rows of cells, e.g. one row per tier or per status), and titles that
//! separate the parts of a report made of several (the demo's load and pipeline).
//!
//! Invariant: rendering is a pure function of what was added, in the order it was added; every
//! value of the label/value rows starts in one column for the whole table, and every grid column
//! is as wide as its widest cell (the first column left-aligned, numbers to its right
//! right-aligned). Lines carry no trailing spaces, so output diffs cleanly.

use std::fmt;

/// Spaces between a label and its value, and between grid columns.
const GAP: usize = 2;
/// Indentation of what belongs to a section.
const INDENT: usize = 2;

/// A report as labelled rows, sections and grids. Build it with the `&mut self` methods, then
/// print it (`Display`) or `render` it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    blocks: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq)]
enum Block {
    /// Underlined, after a blank line unless first; ends the current section.
    Title(String),
    Section(String),
    Row(Row),
    Grid(Grid),
}

/// One label and its value.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    label: String,
    value: String,
}

/// A header row over rows of cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grid {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Grid {
    /// A grid with these column headings.
    pub fn new<I, S>(columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            columns: columns.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells render empty.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: fmt::Display,
    {
        self.rows
            .push(cells.into_iter().map(|c| c.to_string()).collect());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn widths(&self) -> Vec<usize> {
        let n = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.columns.len()])
            .max()
            .unwrap_or(0);
        (0..n)
            .map(|i| {
                std::iter::once(&self.columns)
                    .chain(&self.rows)
                    .filter_map(|r| r.get(i))
                    .map(|c| width(c))
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    fn render_into(&self, out: &mut String, indent: usize) {
        let widths = self.widths();
        for cells in std::iter::once(&self.columns).chain(&self.rows) {
            let mut line = " ".repeat(indent);
            for (i, w) in widths.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                let pad = " ".repeat(w - width(cell));
                if i > 0 {
                    line.push_str(&" ".repeat(GAP));
                    line.push_str(&pad);
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
            }
            push_line(out, &line);
        }
    }
}

impl Table {
    pub fn new() -> Self {
        Self::default()
    }

    /// A table that starts with `title`.
    pub fn titled(title: impl Into<String>) -> Self {
        let mut t = Self::new();
        t.title(title);
        t
    }

    /// Starts a new part of the report: a blank line, `title` underlined; what follows is not
    /// in a section until the next `section`.
    pub fn title(&mut self, title: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Title(title.into()));
        self
    }

    /// Starts a section: what follows is indented under `heading`.
    pub fn section(&mut self, heading: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Section(heading.into()));
        self
    }

    /// A label and its value.
    pub fn row(&mut self, label: impl Into<String>, value: impl fmt::Display) -> &mut Self {
        self.blocks.push(Block::Row(Row {
            label: label.into(),
            value: value.to_string(),
        }));
        self
    }

    /// A grid, in the current section.
    pub fn grid(&mut self, grid: Grid) -> &mut Self {
        self.blocks.push(Block::Grid(grid));
        self
    }

    /// Appends everything of `other`, so reports built apart print as one table with one value
    /// column.
    pub fn append(&mut self, other: Table) -> &mut Self {
        self.blocks.extend(other.blocks);
        self
    }

    pub fn render(&self) -> String {
        let label_width = self
            .blocks
            .iter()
            .scan(0, |indent, b| {
                Some(match b {
                    Block::Title(_) => {
                        *indent = 0;
                        0
                    }
                    Block::Section(_) => {
                        *indent = INDENT;
                        0
                    }
                    Block::Row(r) => *indent + width(&r.label),
                    Block::Grid(_) => 0,
                })
            })
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        let mut indent = 0;
        for b in &self.blocks {
            match b {
                Block::Title(t) => {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    push_line(&mut out, t);
                    push_line(&mut out, &"=".repeat(width(t)));
                    indent = 0;
                }
                Block::Section(h) => {
                    push_line(&mut out, h);
                    indent = INDENT;
                }
                Block::Row(r) => {
                    let label = format!("{}{}", " ".repeat(indent), r.label);
                    let pad = " ".repeat(label_width - width(&label) + GAP);
                    push_line(&mut out, &format!("{label}{pad}{}", r.value));
                }
                Block::Grid(g) => g.render_into(&mut out, indent),
            }
        }
        out
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// Characters, not bytes: labels hold `µ` and `→`.
fn width(s: &str) -> usize {
    s.chars().count()
}

fn push_line(out: &mut String, line: &str) {
    out.push_str(line.trim_end());
    out.push('\n');
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
