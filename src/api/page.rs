//! Pagination of list endpoints: `limit` (default [`DEFAULT_LIMIT`], at most
//! [`MAX_LIMIT`]) and `offset` in the query; the body stays a JSON array and
//! a `Link: <…>; rel="next"` header (RFC 8288) names the next page while
//! there is one. One more row than asked is read to know that.

use axum::http::{header, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::Problem;
use crate::store;

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 500;

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    pub fn parse(limit: Option<i64>, offset: Option<i64>) -> Result<Page, Problem> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Problem::invalid("limit", format!("must be between 1 and {MAX_LIMIT}")));
        }
        let offset = offset.unwrap_or(0);
        if offset < 0 {
            return Err(Problem::invalid("offset", "must not be negative"));
        }
        Ok(Page { limit, offset })
    }

    /// What to ask the store for: one row more, to know whether a next page exists.
    pub fn fetch(self) -> store::Page {
        store::Page { limit: self.limit + 1, offset: self.offset }
    }

    /// This page out of a list already in memory (lists the configuration
    /// bounds, such as specialties and providers).
    pub fn slice<T>(self, all: Vec<T>) -> Vec<T> {
        let skip = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let take = usize::try_from(self.limit + 1).unwrap_or(usize::MAX);
        all.into_iter().skip(skip).take(take).collect()
    }

    /// The page as a response, given rows read with [`Page::fetch`] or [`Page::slice`].
    pub fn respond<T: Serialize>(self, uri: &Uri, mut rows: Vec<T>) -> Response {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let mut response = Json(rows).into_response();
        if more {
            let link = format!("<{}>; rel=\"next\"", self.next_uri(uri));
            if let Ok(v) = HeaderValue::from_str(&link) {
                response.headers_mut().insert(header::LINK, v);
            }
        }
        response
    }

    /// The request's own path and query with `offset` moved on a page.
    fn next_uri(self, uri: &Uri) -> String {
        let kept = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).filter(|(k, _)| k != "limit" && k != "offset");
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(kept)
            .append_pair("limit", &self.limit.to_string())
            .append_pair("offset", &(self.offset + self.limit).to_string())
            .finish();
        format!("{}?{query}", uri.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded() {
        assert_eq!(Page::parse(None, None).unwrap(), Page { limit: DEFAULT_LIMIT, offset: 0 });
        assert_eq!(Page::parse(Some(MAX_LIMIT), Some(7)).unwrap(), Page { limit: MAX_LIMIT, offset: 7 });
        assert_eq!(Page::parse(Some(MAX_LIMIT + 1), None).unwrap_err().errors[0].field, "limit");
        assert_eq!(Page::parse(Some(0), None).unwrap_err().errors[0].field, "limit");
        assert_eq!(Page::parse(None, Some(-1)).unwrap_err().errors[0].field, "offset");
    }

    #[test]
    fn next_link_keeps_the_filters() {
        let page = Page { limit: 2, offset: 4 };
        let uri: Uri = "/api/v1/callbacks?status=open&limit=2&offset=4".parse().unwrap();
        let r = page.respond(&uri, vec![1, 2, 3]);
        let link = r.headers().get(header::LINK).unwrap().to_str().unwrap();
        assert_eq!(link, "</api/v1/callbacks?status=open&limit=2&offset=6>; rel=\"next\"");
        assert!(page.respond(&uri, vec![1, 2]).headers().get(header::LINK).is_none(), "the last page has no next");
        assert_eq!(Page { limit: 2, offset: 1 }.slice(vec![1, 2, 3, 4, 5]), [2, 3, 4]);
    }
}
