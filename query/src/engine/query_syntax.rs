//! The query syntax users already know from Lucene, Elasticsearch and Quickwit, parsed by
//! tantivy's query grammar and adapted to one index by a [`Dialect`]:
//! `service:checkout AND http.status_code:[500 TO 599] AND NOT retry:true`.
//!
//! The adaptation fixes what users would otherwise trip over: a bare attribute name means the
//! attribute (`http.status_code` is `attributes.http.status_code`), `a AND NOT b` means "a,
//! without b" (tantivy alone reads it as "a, and a clause that matches nothing"), a query of
//! exclusions only keeps everything else, `key:abc*` on a JSON field becomes a range
//! (tantivy has no prefix query on JSON paths), and `key:/regex/` on a JSON field becomes a
//! regular-expression query over that path's terms (tantivy's parser refuses regexes on JSON
//! paths). Phrases on a field indexed without positions, and ids on a field that keeps only
//! their first digits, are confirmed on each match's stored document.

use std::ops::Bound;
use std::sync::Arc;

use tantivy::query::{
    BooleanQuery, BoostQuery, Occur, Query, QueryParser, RangeQuery, RegexQuery, TermQuery,
};
use tantivy::query_grammar::{UserInputAst, UserInputBound, UserInputLeaf, UserInputLiteral};
use tantivy::schema::{IndexRecordOption, Schema};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::Term;

use super::verified::{IdCheck, PhraseCheck, Verified};

/// How one index reads field names and range bounds.
pub struct Dialect {
    /// Maps a field as the user wrote it to the index's field (or `json_field.path`).
    pub map_field: fn(&str) -> String,
    /// The JSON fields of the index.
    pub json_fields: &'static [&'static str],
    /// Rewrites a range bound on a (mapped) field, e.g. an RFC 3339 time to nanoseconds.
    pub map_bound: fn(&str, String) -> Result<String, String>,
    /// The default text field when it is indexed without positions: its phrases are checked
    /// on stored documents.
    pub phrases_without_positions: Option<PhrasesWithoutPositions>,
    /// Id fields indexed by the first digits of each id.
    pub id_prefixes: Option<IdPrefixes>,
}

/// Exact-match id fields whose index keeps a prefix of each id (`prefix`): a value
/// (`trace_id:0af7651916cd43dd8448eb211c80319c`), a set of values, or a prefix (`trace_id:0af7*`)
/// finds the documents of its first characters, each confirmed by `check` on its stored copy.
pub struct IdPrefixes {
    pub fields: &'static [&'static str],
    pub prefix: fn(&str) -> String,
    pub check: IdCheck,
}

/// A text field indexed without positions, and how its phrases are checked.
pub struct PhrasesWithoutPositions {
    pub field: &'static str,
    /// The field's analyzer, to split a phrase into the words the index holds.
    pub analyzer: fn() -> TextAnalyzer,
    pub check: PhraseCheck,
}

/// Why a query was refused: a message, and the byte offset in the query where it went wrong
/// when the grammar knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub position: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some(position) => write!(f, "at position {position}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Parses a user query for the index of `parser` (whose schema is `schema`; the parser must
/// have conjunction by default).
pub fn parse(
    parser: &QueryParser,
    schema: &Schema,
    text: &str,
    dialect: &Dialect,
) -> Result<Box<dyn Query>, QueryError> {
    let ast = match tantivy::query_grammar::parse_query(text) {
        Ok(ast) => ast,
        Err(_) => {
            let (_, errors) = tantivy::query_grammar::parse_query_lenient(text);
            let first = errors.into_iter().next();
            return Err(QueryError {
                position: first.as_ref().map(|err| err.pos),
                message: first.map_or_else(|| format!("cannot parse {text:?}"), |err| err.message),
            });
        }
    };
    let mut ast = adapt(ast, dialect)?;
    if let UserInputAst::Clause(clauses) = &mut ast {
        if !clauses.is_empty()
            && clauses
                .iter()
                .all(|(occur, _)| *occur == Some(Occur::MustNot))
        {
            clauses.push((
                Some(Occur::Must),
                UserInputAst::Leaf(Box::new(UserInputLeaf::All)),
            ));
        }
    }
    build(parser, schema, ast, dialect)
}

/// The query of an adapted AST: tantivy's parser builds it, but for regular expressions on JSON
/// paths, which are built here.
fn build(
    parser: &QueryParser,
    schema: &Schema,
    ast: UserInputAst,
    dialect: &Dialect,
) -> Result<Box<dyn Query>, QueryError> {
    if !needs_own_build(&ast, dialect) {
        return parser
            .build_query_from_user_input_ast(ast)
            .map_err(|err| QueryError {
                position: None,
                message: err.to_string(),
            });
    }
    Ok(match ast {
        UserInputAst::Clause(clauses) => Box::new(BooleanQuery::new(
            clauses
                .into_iter()
                .map(|(occur, child)| {
                    // Conjunction by default, as the parser is set up.
                    Ok((
                        occur.unwrap_or(Occur::Must),
                        build(parser, schema, child, dialect)?,
                    ))
                })
                .collect::<Result<_, QueryError>>()?,
        )),
        UserInputAst::Boost(inner, boost) => Box::new(BoostQuery::new(
            build(parser, schema, *inner, dialect)?,
            boost.into_inner() as f32,
        )),
        UserInputAst::Leaf(leaf) => match *leaf {
            UserInputLeaf::Regex {
                field: Some(field),
                pattern,
            } => json_regex(schema, &field, &pattern, dialect)?,
            UserInputLeaf::Literal(literal) if phrase_words(&literal, dialect).is_some() => {
                verified_phrase(schema, &literal, dialect)?
            }
            leaf if id_prefixes(&leaf, dialect).is_some() => {
                verified_id(parser, schema, leaf, dialect)?
            }
            leaf => build(parser, schema, UserInputAst::Leaf(Box::new(leaf)), dialect)?,
        },
    })
}

/// Whether the AST holds what tantivy's parser cannot build: a regex on a JSON path, or a
/// phrase on a field without positions.
fn needs_own_build(ast: &UserInputAst, dialect: &Dialect) -> bool {
    match ast {
        UserInputAst::Clause(clauses) => clauses
            .iter()
            .any(|(_, child)| needs_own_build(child, dialect)),
        UserInputAst::Boost(inner, _) => needs_own_build(inner, dialect),
        UserInputAst::Leaf(leaf) => match leaf.as_ref() {
            UserInputLeaf::Regex {
                field: Some(field), ..
            } => is_json(field, dialect),
            UserInputLeaf::Literal(literal) if phrase_words(literal, dialect).is_some() => true,
            leaf => id_prefixes(leaf, dialect).is_some(),
        },
    }
}

/// The id prefixes of the dialect, when `leaf` is a value or a set of values on one of them.
fn id_prefixes<'a>(leaf: &UserInputLeaf, dialect: &'a Dialect) -> Option<&'a IdPrefixes> {
    let ids = dialect.id_prefixes.as_ref()?;
    let field = match leaf {
        UserInputLeaf::Literal(literal) => literal.field_name.as_deref()?,
        UserInputLeaf::Set { field, .. } => field.as_deref()?,
        _ => return None,
    };
    ids.fields.contains(&field).then_some(ids)
}

/// A value, a prefix or a set of values on an id field indexed by prefixes: the documents of
/// the terms they start with, each confirmed on its stored copy.
fn verified_id(
    parser: &QueryParser,
    schema: &Schema,
    leaf: UserInputLeaf,
    dialect: &Dialect,
) -> Result<Box<dyn Query>, QueryError> {
    let error = |message: String| QueryError {
        position: None,
        message,
    };
    let Some(ids) = id_prefixes(&leaf, dialect) else {
        return Err(error("not an id".into()));
    };
    let by_parser = |leaf: UserInputLeaf| {
        parser
            .build_query_from_user_input_ast(UserInputAst::Leaf(Box::new(leaf)))
            .map_err(|err| error(err.to_string()))
    };
    let (field, values, prefix, inner) = match leaf {
        UserInputLeaf::Literal(literal) => {
            let field = literal.field_name.clone().unwrap_or_default();
            let stem = match literal.phrase.strip_suffix('*') {
                Some(stem) if !stem.is_empty() && !stem.contains('*') => Some(stem.to_owned()),
                _ if literal.prefix => Some(literal.phrase.clone()),
                _ => None,
            };
            match stem {
                // The terms starting with the prefix's first characters (all of them, or the
                // one term they make).
                Some(stem) => {
                    let cut = (ids.prefix)(&stem);
                    let index_field = schema
                        .get_field(&field)
                        .map_err(|err| error(err.to_string()))?;
                    let term = |text: &str| Term::from_field_text(index_field, text);
                    let upper = after_prefix(&cut)
                        .map_or(Bound::Unbounded, |upper| Bound::Excluded(term(&upper)));
                    let inner: Box<dyn Query> =
                        Box::new(RangeQuery::new(Bound::Included(term(&cut)), upper));
                    (field, vec![stem], true, inner)
                }
                None => {
                    let values = vec![literal.phrase.clone()];
                    (
                        field,
                        values,
                        false,
                        by_parser(UserInputLeaf::Literal(literal))?,
                    )
                }
            }
        }
        UserInputLeaf::Set {
            field: Some(field),
            elements,
        } => {
            let values = elements.clone();
            let inner = by_parser(UserInputLeaf::Set {
                field: Some(field.clone()),
                elements,
            })?;
            (field, values, false, inner)
        }
        _ => return Err(error("not an id".into())),
    };
    let check = ids.check;
    Ok(Box::new(Verified {
        inner,
        checks: format!(
            "{field} {} {values:?}",
            if prefix { "starts with" } else { "in" }
        ),
        check: Arc::new(move |segment| check(segment, &field, &values, prefix)),
    }))
}

/// The smallest string after every string starting with `prefix` (not empty), if there is one.
fn after_prefix(prefix: &str) -> Option<String> {
    let mut upper = prefix.to_owned();
    let last = upper.pop()?;
    let next = char::from_u32(last as u32 + 1)?;
    upper.push(next);
    Some(upper)
}

/// The words of a literal of several words on the field without positions (a phrase, or a
/// term the analyzer splits, such as `abc-123-def`).
fn phrase_words(literal: &UserInputLiteral, dialect: &Dialect) -> Option<Vec<String>> {
    let phrases = dialect.phrases_without_positions.as_ref()?;
    if literal
        .field_name
        .as_deref()
        .is_some_and(|field| field != phrases.field)
    {
        return None;
    }
    let mut analyzer = (phrases.analyzer)();
    let mut stream = analyzer.token_stream(&literal.phrase);
    let mut words = Vec::new();
    while let Some(token) = tantivy::tokenizer::TokenStream::next(&mut stream) {
        words.push(token.text.clone());
    }
    (words.len() > 1).then_some(words)
}

/// A phrase on the field without positions: documents holding every word, checked for the
/// phrase on their stored copy.
fn verified_phrase(
    schema: &Schema,
    literal: &UserInputLiteral,
    dialect: &Dialect,
) -> Result<Box<dyn Query>, QueryError> {
    let error = |message: String| QueryError {
        position: None,
        message,
    };
    let (Some(phrases), Some(words)) = (
        dialect.phrases_without_positions.as_ref(),
        phrase_words(literal, dialect),
    ) else {
        return Err(error("not a phrase".into()));
    };
    if literal.prefix {
        return Err(error(format!(
            "a phrase prefix (\"{}\"*) is not supported on {}: use whole words, or one word with *",
            literal.phrase, phrases.field
        )));
    }
    let field = schema
        .get_field(phrases.field)
        .map_err(|err| error(err.to_string()))?;
    let terms: Vec<(Occur, Box<dyn Query>)> = words
        .iter()
        .map(|word| {
            let term = Term::from_field_text(field, word);
            let query: Box<dyn Query> = Box::new(TermQuery::new(term, IndexRecordOption::Basic));
            (Occur::Must, query)
        })
        .collect();
    let (check, slop) = (phrases.check, literal.slop);
    Ok(Box::new(Verified {
        inner: Box::new(BooleanQuery::new(terms)),
        checks: format!("phrase {words:?} with slop {slop}"),
        check: Arc::new(move |segment| check(segment, &words, slop)),
    }))
}

/// `json_field.path:/pattern/`: the pattern must match a whole string value at that path. A JSON
/// term is the path, a type byte and the value, so the regex is anchored behind that prefix.
fn json_regex(
    schema: &Schema,
    field: &str,
    pattern: &str,
    dialect: &Dialect,
) -> Result<Box<dyn Query>, QueryError> {
    let error = |message: String| QueryError {
        position: None,
        message,
    };
    let (json, path) = dialect
        .json_fields
        .iter()
        .find_map(|json| {
            let path = field.strip_prefix(json)?.strip_prefix('.')?;
            Some((*json, path))
        })
        .ok_or_else(|| error(format!("{field:?} is not an attribute path")))?;
    let json_field = schema
        .get_field(json)
        .map_err(|err| error(err.to_string()))?;
    let mut term = Term::from_field_json_path(json_field, path, true);
    term.append_type_and_str("");
    let prefix = std::str::from_utf8(term.serialized_value_bytes())
        .map_err(|_| error(format!("attribute path {path:?} is not UTF-8")))?;
    let anchored = format!("{}(?:{pattern})", regex::escape(prefix));
    RegexQuery::from_pattern(&anchored, json_field)
        .map(|query| Box::new(query) as Box<dyn Query>)
        .map_err(|err| error(format!("invalid regular expression /{pattern}/: {err}")))
}

fn adapt(ast: UserInputAst, dialect: &Dialect) -> Result<UserInputAst, QueryError> {
    Ok(match ast {
        UserInputAst::Clause(clauses) => UserInputAst::Clause(
            clauses
                .into_iter()
                .map(|(occur, child)| {
                    Ok(match adapt(child, dialect)? {
                        // `AND NOT x` arrives as a required clause holding only `-x`.
                        UserInputAst::Clause(mut inner)
                            if occur != Some(Occur::MustNot)
                                && occur != Some(Occur::Should)
                                && inner.len() == 1
                                && inner[0].0 == Some(Occur::MustNot) =>
                        {
                            let (_, negated) = inner.pop().expect("one clause");
                            (Some(Occur::MustNot), negated)
                        }
                        child => (occur, child),
                    })
                })
                .collect::<Result<_, QueryError>>()?,
        ),
        UserInputAst::Boost(inner, boost) => {
            UserInputAst::Boost(Box::new(adapt(*inner, dialect)?), boost)
        }
        UserInputAst::Leaf(leaf) => UserInputAst::Leaf(Box::new(qualify(*leaf, dialect)?)),
    })
}

fn is_json(field: &str, dialect: &Dialect) -> bool {
    dialect.json_fields.iter().any(|json| {
        field
            .strip_prefix(json)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

fn map_bound(
    field: &str,
    bound: UserInputBound,
    dialect: &Dialect,
) -> Result<UserInputBound, QueryError> {
    let map = |value: String| {
        (dialect.map_bound)(field, value).map_err(|message| QueryError {
            position: None,
            message,
        })
    };
    Ok(match bound {
        UserInputBound::Inclusive(value) => UserInputBound::Inclusive(map(value)?),
        UserInputBound::Exclusive(value) => UserInputBound::Exclusive(map(value)?),
        UserInputBound::Unbounded => UserInputBound::Unbounded,
    })
}

fn qualify(leaf: UserInputLeaf, dialect: &Dialect) -> Result<UserInputLeaf, QueryError> {
    let map_field = |field: String| (dialect.map_field)(&field);
    Ok(match leaf {
        UserInputLeaf::Literal(mut literal) => {
            literal.field_name = literal.field_name.map(map_field);
            let on_json = literal
                .field_name
                .as_deref()
                .is_some_and(|f| is_json(f, dialect));
            // The grammar reads `abc*` as the term "abc*" (and `"abc"*` as a phrase prefix).
            let prefix = match literal.phrase.strip_suffix('*') {
                Some(stem) if !stem.is_empty() && !stem.contains('*') => Some(stem.to_owned()),
                _ if literal.prefix && !literal.phrase.is_empty() => Some(literal.phrase.clone()),
                _ => None,
            };
            if let (Some(prefix), true) = (prefix, on_json) {
                return Ok(UserInputLeaf::Range {
                    field: literal.field_name,
                    upper: after_prefix(&prefix)
                        .map_or(UserInputBound::Unbounded, UserInputBound::Exclusive),
                    lower: UserInputBound::Inclusive(prefix),
                });
            }
            if let Some(field) = literal.field_name.as_deref() {
                // An exact value on a field with rewritten bounds (a time) is rewritten too.
                let mapped =
                    (dialect.map_bound)(field, literal.phrase.clone()).map_err(|message| {
                        QueryError {
                            position: None,
                            message,
                        }
                    })?;
                literal.phrase = mapped;
            }
            UserInputLeaf::Literal(literal)
        }
        UserInputLeaf::Range {
            field,
            lower,
            upper,
        } => {
            let field = field.map(map_field);
            let name = field.clone().unwrap_or_default();
            UserInputLeaf::Range {
                lower: map_bound(&name, lower, dialect)?,
                upper: map_bound(&name, upper, dialect)?,
                field,
            }
        }
        UserInputLeaf::Set { field, elements } => UserInputLeaf::Set {
            field: field.map(map_field),
            elements,
        },
        UserInputLeaf::Exists { field } => UserInputLeaf::Exists {
            field: map_field(field),
        },
        UserInputLeaf::Regex { field, pattern } => UserInputLeaf::Regex {
            field: field.map(map_field),
            pattern,
        },
        other => other,
    })
}
