//! Your function: `handle` gets each request whole and returns the response.

use bytes::Bytes;
use http::{Request, Response, StatusCode};

/// Any error becomes a 500 with its text.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub async fn handle(req: Request<Bytes>) -> Result<Response<Bytes>, Error> {
    let name = String::from_utf8_lossy(req.body());
    let name = if name.trim().is_empty() { "world" } else { name.trim() };
    let resp = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(Bytes::from(format!("Hello from Rust, {name}!\n")))?;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn greets_the_body() {
        let resp = handle(Request::new(Bytes::from("Pi"))).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.body(), "Hello from Rust, Pi!\n");
    }

    #[tokio::test]
    async fn greets_the_world_without_a_body() {
        let resp = handle(Request::new(Bytes::new())).await.unwrap();
        assert_eq!(resp.body(), "Hello from Rust, world!\n");
    }
}
