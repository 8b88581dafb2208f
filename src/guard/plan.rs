//! guard::plan: a statement's rewrite with its literal values left out, so that the next
//! statement of the same form (the same tokens but for literal values, under the same
//! session state, policy and schema: `cache_key`) is rewritten without being parsed again.
//!
//! A template says where each edit goes (the start or end of a token) and where each value
//! in it comes from: a literal of the statement, read again the way the analysis read it
//! (`analyze::replay`), NULL, or a `?`. It is made only when every value in the rewrite is
//! traced to exactly one way of reading one literal, and replayed only when every literal
//! the analysis read gives a value of the same kind again; otherwise the statement is
//! analyzed. Plans hold no keys and no values: sealing and blind indexes are computed at
//! render time, under the keys of that moment.

use crate::policy::Policy;
use crate::sql::analyze::{Edit, Flow, Keep, Lit, Piece, replay};
use crate::sql::lex::{Mode, Token};

/// A position of the statement: the start or the end of its n-th token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    Start(usize),
    End(usize),
}

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Null,
    Param(usize),
    /// The value `Template::flows[n]` reads; `last`: no later part uses it (the replay
    /// moves it there instead of copying it).
    Flow {
        n: usize,
        last: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(std::sync::Arc<str>),
    Seal(usize, Source, Option<Source>, Keep),
    BlindWrite(usize, Source, Option<Source>, Keep),
    BlindSearch {
        column: usize,
        qualifier: String,
        values: Vec<Source>,
        negated: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    start: Anchor,
    end: Anchor,
    parts: Vec<Part>,
}

/// A rewrite without its values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    steps: Vec<Step>,
    /// Every literal the analysis read, token indices relative to the statement's first, and
    /// the kind of value each gave (its bytes left out).
    flows: Vec<Flow>,
}

impl Template {
    /// The template of a statement's rewrite (`tokens`: the statement's own, `base` the index
    /// of its first in the text's). None: some value or position cannot be traced.
    pub fn of(
        edits: &[Edit<'_>],
        flows: &[Flow],
        policy: &Policy,
        tokens: &[Token],
        base: usize,
    ) -> Option<Template> {
        let flows: Vec<Flow> = flows
            .iter()
            .map(|f| {
                Some(Flow {
                    first: f.first.checked_sub(base)?,
                    last: f.last.checked_sub(base)?,
                    ..f.clone()
                })
            })
            .collect::<Option<_>>()?;
        if flows.iter().any(|f| f.last >= tokens.len()) {
            return None;
        }
        let index = |col: &crate::policy::Protected| {
            policy.columns().iter().position(|c| std::ptr::eq(c, col))
        };
        let source = |lit: &Lit| -> Option<Source> {
            match lit {
                Lit::Null => Some(Source::Null),
                Lit::Param(i) => Some(Source::Param(*i)),
                // Kept as stored: decided by the value (View::decided), never templated.
                Lit::Stored(..) => None,
                Lit::Bytes(_) => {
                    // The one way of reading one literal that gave these bytes. Two literals
                    // (or two readings of one) that give the same bytes here could give
                    // different ones in the next statement: no template then.
                    let mut found: Option<usize> = None;
                    for (n, f) in flows.iter().enumerate() {
                        if f.lit != *lit {
                            continue;
                        }
                        match found {
                            None => found = Some(n),
                            Some(m) if same_reading(&flows[m], f, policy) => {}
                            Some(_) => return None,
                        }
                    }
                    found.map(|n| Source::Flow { n, last: false })
                }
            }
        };
        // A row key: none, or one that is traced.
        let key_source = |key: &Option<Lit>| -> Option<Option<Source>> {
            match key {
                None => Some(None),
                Some(k) => source(k).map(Some),
            }
        };
        let anchor = |at: usize, prefer_end: bool| -> Option<Anchor> {
            // Tokens are in text order: their starts and their ends both ascend.
            let starts = tokens
                .binary_search_by_key(&at, |t| t.start)
                .ok()
                .map(Anchor::Start);
            let ends = tokens
                .binary_search_by_key(&at, |t| t.end)
                .ok()
                .map(Anchor::End);
            if prefer_end {
                ends.or(starts)
            } else {
                starts.or(ends)
            }
        };
        let mut steps = Vec::with_capacity(edits.len());
        for e in edits {
            let mut parts = Vec::with_capacity(e.pieces.len());
            for p in &e.pieces {
                parts.push(match p {
                    Piece::Text(t) => Part::Text(t.clone()),
                    Piece::Raw(_) => return None,
                    Piece::Seal(col, lit, key, keep) => {
                        Part::Seal(index(col)?, source(lit)?, key_source(key)?, *keep)
                    }
                    Piece::BlindWrite(col, lit, key, keep) => {
                        Part::BlindWrite(index(col)?, source(lit)?, key_source(key)?, *keep)
                    }
                    Piece::BlindSearch {
                        column,
                        qualifier,
                        values,
                        negated,
                    } => Part::BlindSearch {
                        column: index(column)?,
                        qualifier: qualifier.clone(),
                        values: values.iter().map(source).collect::<Option<_>>()?,
                        negated: *negated,
                    },
                });
            }
            steps.push(Step {
                start: anchor(e.start, false)?,
                end: anchor(e.end, true)?,
                parts,
            });
        }
        // Security: the plan keeps how each literal was read, not what it held (a cache
        // lives long; the values are the first statement's, often personal data).
        let flows: Vec<Flow> = flows
            .into_iter()
            .map(|f| Flow {
                lit: match f.lit {
                    Lit::Bytes(_) => Lit::Bytes(Vec::new()),
                    other => other,
                },
                ..f
            })
            .collect();
        // The last use of each value, in the order `replay` visits them.
        let mut seen = vec![false; flows.len()];
        for part in steps
            .iter_mut()
            .rev()
            .flat_map(|s| s.parts.iter_mut().rev())
        {
            for src in part.sources_mut().into_iter().rev() {
                if let Source::Flow { n, last } = src
                    && let Some(s) = seen.get_mut(*n)
                {
                    *last = !*s;
                    *s = true;
                }
            }
        }
        Some(Template { steps, flows })
    }

    /// The rewrite of another statement of the same form (`src`, `tokens` and `base` as in
    /// `of`, lexed under `mode`). None: one of its literals reads differently; analyze it.
    pub fn replay<'p>(
        &self,
        policy: &'p Policy,
        src: &[u8],
        tokens: &[Token],
        base: usize,
        mode: &Mode<'_>,
        empty_string_is_null: bool,
    ) -> Option<Vec<Edit<'p>>> {
        let stmt = tokens.get(base..)?;
        let columns = policy.columns();
        let mut values: Vec<Option<Lit>> = self
            .flows
            .iter()
            .map(|f| {
                replay(
                    f,
                    src,
                    stmt,
                    mode,
                    columns.get(f.column)?,
                    empty_string_is_null,
                )
                .map(Some)
            })
            .collect::<Option<_>>()?;
        let at = |a: Anchor| -> Option<usize> {
            match a {
                Anchor::Start(i) => stmt.get(i).map(|t| t.start),
                Anchor::End(i) => stmt.get(i).map(|t| t.end),
            }
        };
        let mut edits = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let mut pieces = Vec::with_capacity(step.parts.len());
            for p in &step.parts {
                pieces.push(match p {
                    Part::Text(t) => Piece::Text(t.clone()),
                    Part::Seal(c, s, k, keep) => Piece::Seal(
                        columns.get(*c)?,
                        value(&mut values, s)?,
                        row_key(&mut values, k)?,
                        *keep,
                    ),
                    Part::BlindWrite(c, s, k, keep) => Piece::BlindWrite(
                        columns.get(*c)?,
                        value(&mut values, s)?,
                        row_key(&mut values, k)?,
                        *keep,
                    ),
                    Part::BlindSearch {
                        column,
                        qualifier,
                        values: sources,
                        negated,
                    } => Piece::BlindSearch {
                        column: columns.get(*column)?,
                        qualifier: qualifier.clone(),
                        values: sources
                            .iter()
                            .map(|s| value(&mut values, s))
                            .collect::<Option<_>>()?,
                        negated: *negated,
                    },
                });
            }
            edits.push(Edit {
                start: at(step.start)?,
                end: at(step.end)?,
                pieces,
            });
        }
        Some(edits)
    }
}

impl Part {
    /// The sources of its values, in the order `replay` reads them.
    fn sources_mut(&mut self) -> Vec<&mut Source> {
        match self {
            Part::Text(_) => Vec::new(),
            Part::Seal(_, s, k, _) | Part::BlindWrite(_, s, k, _) => {
                std::iter::once(s).chain(k.as_mut()).collect()
            }
            Part::BlindSearch { values, .. } => values.iter_mut().collect(),
        }
    }
}

/// A replayed value: moved out at its last use, copied before.
fn value(values: &mut [Option<Lit>], s: &Source) -> Option<Lit> {
    Some(match s {
        Source::Null => Lit::Null,
        Source::Param(i) => Lit::Param(*i),
        Source::Flow { n, last } => {
            let v = values.get_mut(*n)?;
            if *last { v.take()? } else { v.clone()? }
        }
    })
}

fn row_key(values: &mut [Option<Lit>], k: &Option<Source>) -> Option<Option<Lit>> {
    match k {
        None => Some(None),
        Some(s) => value(values, s).map(Some),
    }
}

/// Whether two flows read the same literal the same way (`analyze::expr::lit_of` depends on
/// the tokens, the sign, and whether the column keeps bytes).
fn same_reading(a: &Flow, b: &Flow, policy: &Policy) -> bool {
    let bytes = |f: &Flow| {
        policy
            .columns()
            .get(f.column)
            .map(|c| c.plain_type.kind() == crate::crypto::mask::Kind::Bytes)
    };
    a.first == b.first && a.last == b.last && a.neg == b.neg && bytes(a) == bytes(b)
}
