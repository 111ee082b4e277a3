//! Detection of resumption chains that never end: a token seen twice, a
//! page repeating the previous one, too many empty pages in a row, or far
//! more items than the provider announced.
//!
//! Depends on [`crate::parse`] only. The run loop feeds it every page of a
//! chain and stops the chain with the error it returns.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::parse::Page;

/// Why a resumption chain was stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoopError {
    #[error("resumption token {token:?} came back a second time (page {page}); the list loops")]
    RepeatedToken { token: String, page: u64 },
    #[error("page {page} repeats the previous page's items; the list makes no progress")]
    RepeatedPage { page: u64 },
    #[error("{count} pages in a row without records but with a token; the list makes no progress")]
    TooManyEmptyPages { count: u32 },
    #[error("{seen} items received but the provider announced {announced}; the list overruns")]
    Overrun { seen: u64, announced: u64 },
}

/// Watches one resumption chain (one window of one set).
#[derive(Debug, Clone)]
pub struct TokenLoopGuard {
    tokens: HashSet<String>,
    last_page: Option<u64>,
    empty_streak: u32,
    max_empty_pages: u32,
    pages: u64,
    seen: u64,
    announced: Option<u64>,
}

impl TokenLoopGuard {
    /// A guard tolerating `max_empty_pages` consecutive empty pages that
    /// still carry a token (providers that filter after paging).
    pub fn new(max_empty_pages: u32) -> Self {
        Self {
            tokens: HashSet::new(),
            last_page: None,
            empty_streak: 0,
            max_empty_pages,
            pages: 0,
            seen: 0,
            announced: None,
        }
    }

    /// Notes a token already used in this chain, e.g. the checkpoint's
    /// token a resumed run starts from.
    pub fn seed_token(&mut self, token: &str) {
        self.tokens.insert(token.to_owned());
    }

    /// Checks the next page of the chain. `Ok` means: follow its token (or
    /// stop normally if it has none).
    pub fn check(&mut self, page: &Page) -> Result<(), LoopError> {
        self.pages += 1;
        let items = page.len() as u64;
        self.seen += items;

        if let Some(t) = &page.token
            && let Some(n) = t.complete_list_size
        {
            self.announced = Some(self.announced.map_or(n, |a| a.max(n)));
        }
        if let Some(announced) = self.announced {
            // completeListSize is often approximate; only a gross overrun
            // is a loop.
            if self.seen > announced.saturating_mul(2).saturating_add(1000) {
                return Err(LoopError::Overrun {
                    seen: self.seen,
                    announced,
                });
            }
        }

        if items == 0 {
            if page.next_token().is_some() {
                self.empty_streak += 1;
                if self.empty_streak > self.max_empty_pages {
                    return Err(LoopError::TooManyEmptyPages {
                        count: self.empty_streak,
                    });
                }
            }
        } else {
            self.empty_streak = 0;
            let fp = fingerprint(page);
            if self.last_page == Some(fp) {
                return Err(LoopError::RepeatedPage { page: self.pages });
            }
            self.last_page = Some(fp);
        }

        if let Some(token) = page.next_token()
            && !self.tokens.insert(token.to_owned())
        {
            return Err(LoopError::RepeatedToken {
                token: token.to_owned(),
                page: self.pages,
            });
        }
        Ok(())
    }

    /// Pages checked so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }
}

fn fingerprint(page: &Page) -> u64 {
    let mut h = DefaultHasher::new();
    for r in &page.records {
        r.header.identifier.hash(&mut h);
        r.header.datestamp.hash(&mut h);
    }
    for i in &page.identifiers {
        i.identifier.hash(&mut h);
        i.datestamp.hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Header, ResumptionToken};

    fn page(ids: &[&str], token: Option<&str>) -> Page {
        Page {
            identifiers: ids
                .iter()
                .map(|i| Header {
                    identifier: (*i).to_owned(),
                    datestamp: "2020-01-01".into(),
                    ..Header::default()
                })
                .collect(),
            token: token.map(|t| ResumptionToken {
                value: t.to_owned(),
                ..ResumptionToken::default()
            }),
            ..Page::default()
        }
    }

    #[test]
    fn a_normal_chain_passes() {
        let mut g = TokenLoopGuard::new(3);
        assert_eq!(g.check(&page(&["a", "b"], Some("t1"))), Ok(()));
        assert_eq!(g.check(&page(&["c", "d"], Some("t2"))), Ok(()));
        assert_eq!(g.check(&page(&["e"], Some(""))), Ok(()));
        assert_eq!(g.pages(), 3);
    }

    #[test]
    fn repeated_token_is_a_loop() {
        let mut g = TokenLoopGuard::new(3);
        g.check(&page(&["a"], Some("t1"))).expect("first");
        assert!(matches!(
            g.check(&page(&["b"], Some("t1"))),
            Err(LoopError::RepeatedToken { page: 2, .. })
        ));
        let mut g = TokenLoopGuard::new(3);
        g.seed_token("t0");
        assert!(g.check(&page(&["a"], Some("t0"))).is_err());
    }

    #[test]
    fn repeated_page_is_a_loop() {
        let mut g = TokenLoopGuard::new(3);
        g.check(&page(&["a", "b"], Some("t1"))).expect("first");
        assert_eq!(
            g.check(&page(&["a", "b"], Some("t2"))),
            Err(LoopError::RepeatedPage { page: 2 })
        );
    }

    #[test]
    fn empty_pages_are_tolerated_up_to_the_limit() {
        let mut g = TokenLoopGuard::new(2);
        g.check(&page(&[], Some("t1"))).expect("1");
        g.check(&page(&[], Some("t2"))).expect("2");
        assert_eq!(
            g.check(&page(&[], Some("t3"))),
            Err(LoopError::TooManyEmptyPages { count: 3 })
        );
        let mut g = TokenLoopGuard::new(1);
        g.check(&page(&[], Some("t1"))).expect("1");
        g.check(&page(&["a"], Some("t2"))).expect("resets");
        g.check(&page(&[], Some("t3"))).expect("1 again");
    }

    #[test]
    fn gross_overrun_of_complete_list_size() {
        let mut g = TokenLoopGuard::new(3);
        let mut p = page(&["a"], Some("t0"));
        if let Some(t) = &mut p.token {
            t.complete_list_size = Some(1);
        }
        g.check(&p).expect("first");
        let ids: Vec<String> = (0..1100).map(|i| format!("id{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert!(matches!(
            g.check(&page(&refs, Some("t1"))),
            Err(LoopError::Overrun { announced: 1, .. })
        ));
    }
}
