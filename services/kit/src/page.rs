//! Paged listings: the `page`/`size` query convention and the page body.
//!
//! Every `GET` collection endpoint (`/api/product`, `/api/order`,
//! `/api/notifications`) pages the same way, so clients, the dashboard and
//! tests read them alike: `page` counts from 0, `size` is 1 to a maximum
//! the endpoint chooses, and the body is
//! `{"items":[..],"page":0,"size":20,"total":57,"totalPages":3}`.
//!
//! Query structs keep `page` and `size` as their own `Option<u64>` fields
//! (serde's `flatten` cannot read numbers from a query string) and call
//! [`PageRequest::new`], which answers bad values with a 400 problem.

use serde::Serialize;

use crate::error::Problem;

/// Page size when the client gives none.
pub const DEFAULT_SIZE: u64 = 20;

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Zero-based page number.
    pub page: u64,
    /// Items per page, at least 1.
    pub size: u64,
}

impl PageRequest {
    /// Validates `page` (default 0) and `size` (default [`DEFAULT_SIZE`],
    /// 1 to `max_size`).
    pub fn new(page: Option<u64>, size: Option<u64>, max_size: u64) -> Result<Self, Problem> {
        let page = page.unwrap_or(0);
        let size = size.unwrap_or(DEFAULT_SIZE.min(max_size));
        if size == 0 || size > max_size {
            return Err(Problem::bad_request(format!(
                "size must be between 1 and {max_size}, got {size}"
            ))
            .kind("bad-query"));
        }
        // Bounds the offset so `page * size` cannot overflow a u64 or an SQL BIGINT.
        if page > i32::MAX as u64 {
            return Err(Problem::bad_request(format!(
                "page must be at most {}, got {page}",
                i32::MAX
            ))
            .kind("bad-query"));
        }
        Ok(PageRequest { page, size })
    }

    /// How many items precede this page.
    pub fn offset(&self) -> u64 {
        self.page * self.size
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u64,
    pub size: u64,
    /// Items matching the filter across all pages.
    pub total: u64,
    pub total_pages: u64,
}

impl<T> Page<T> {
    /// A page of `items` out of `total` matching items.
    pub fn new(items: Vec<T>, request: PageRequest, total: u64) -> Page<T> {
        Page {
            items,
            page: request.page,
            size: request.size,
            total,
            total_pages: total.div_ceil(request.size),
        }
    }

    /// The same page with every item converted.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            page: self.page,
            size: self.size,
            total: self.total,
            total_pages: self.total_pages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defaults apply, the size is bounded and the offset follows page and size.
    #[test]
    fn validates_and_computes_offset() {
        let r = PageRequest::new(None, None, 100).unwrap();
        assert_eq!((r.page, r.size, r.offset()), (0, DEFAULT_SIZE, 0));
        let r = PageRequest::new(Some(3), Some(7), 100).unwrap();
        assert_eq!(r.offset(), 21);
        assert_eq!(PageRequest::new(None, None, 5).unwrap().size, 5);
        for (page, size) in [(None, Some(0)), (None, Some(101)), (Some(u64::MAX), None)] {
            let p = PageRequest::new(page, size, 100).unwrap_err();
            assert_eq!(p.status, 400, "{page:?} {size:?}");
        }
    }

    /// The body counts pages by rounding up, in camelCase.
    #[test]
    fn page_body() {
        let p = Page::new(
            vec![1, 2],
            PageRequest::new(Some(1), Some(2), 10).unwrap(),
            5,
        );
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"items":[1,2],"page":1,"size":2,"total":5,"totalPages":3})
        );
        assert_eq!(
            Page::new(
                Vec::<u8>::new(),
                PageRequest::new(None, None, 10).unwrap(),
                0
            )
            .total_pages,
            0
        );
    }
}
