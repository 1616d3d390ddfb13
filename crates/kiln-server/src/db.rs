//! The store on the async runtime: every call runs on a blocking thread, so
//! a commit waiting for `fsync` never stalls the request handlers.

use std::sync::Arc;

use kiln_store::{Store, StoreError};

/// A cheap handle on the shared [`Store`].
#[derive(Clone, Debug)]
pub struct Db(Arc<Store>);

impl Db {
    pub fn new(store: Store) -> Db {
        Db(Arc::new(store))
    }

    pub fn store(&self) -> &Store {
        &self.0
    }

    /// Runs `f` with the store on a blocking thread.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Store) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let store = self.0.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only at runtime shutdown; the write may not have happened.
            Err(_) => Err(StoreError::Cancelled),
        }
    }
}
