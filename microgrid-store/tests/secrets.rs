//! No store URL secret reaches a message, a `Debug` or a printed line.

#[cfg(feature = "postgres")]
use microgrid_store::Grid;
use microgrid_store::{AnyStore, StoreError};

const SECRET: &str = "hunter2-secret";

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the secret: {text}");
}

#[tokio::test]
async fn bad_urls_never_show_their_secrets() {
    for url in [
        format!("redis://ann:{SECRET}@db/x"),
        format!("postgres://ann:{SECRET}@db:notaport/x"),
        format!("postgres://ann@db/x?password={SECRET}&schema=Bad-Name"),
        format!("mongodb://ann:{SECRET}@db:notaport/x"),
        format!("sqlite:books.db?mode=nonsense&token={SECRET}"),
    ] {
        let e = AnyStore::open(&url)
            .await
            .err()
            .unwrap_or_else(|| panic!("{url} opened"));
        assert!(
            matches!(e, StoreError::Url { .. } | StoreError::Database { .. }),
            "{e:?}"
        );
        assert_clean("Display", &e.to_string());
        assert_clean("Debug", &format!("{e:?}"));
        assert_clean("Debug", &format!("{e:#?}"));
    }
}

/// An open PostgreSQL store (the test server trusts local connections,
/// so the password in the URL is accepted and unused) does not show it.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn an_open_store_does_not_show_its_password() {
    let url = std::env::var("MICROGRID_TEST_POSTGRES_URL").expect(
        "MICROGRID_TEST_POSTGRES_URL is not set: run ./scripts/databases run -- cargo test --all-features",
    );
    let with_password = url.replacen("postgres@", &format!("postgres:{SECRET}@"), 1);
    assert!(
        with_password.contains(SECRET),
        "{url} has no user to give a password"
    );
    let grid = Grid::open(&with_password).await.unwrap();
    assert_clean("Debug of a grid", &format!("{grid:?}"));
    assert_clean("Debug of a grid", &format!("{grid:#?}"));
    assert_clean("Debug of its store", &format!("{:#?}", grid.store()));
}
