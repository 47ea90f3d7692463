//! State a service loads on its first call rather than at start (a
//! model's weights): loaded once on a blocking thread, shared by every call
//! after, and a failed load is tried again by the next call.

use std::fmt::Display;
use std::sync::Arc;

use hearthnet_base::ErrorCode;
use tokio::sync::OnceCell;

use crate::service::CallError;

/// The model `name`, loaded on first use.
pub struct LoadedOnFirstUse<T> {
    name: String,
    cell: OnceCell<Arc<T>>,
}

impl<T: Send + Sync + 'static> LoadedOnFirstUse<T> {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            cell: OnceCell::new(),
        }
    }

    /// The loaded state, running `load` on a blocking thread if nothing is
    /// loaded yet; calls that arrive meanwhile wait for that one load. A
    /// load that fails is `not_implemented` naming the model (the node
    /// offers what it cannot serve), and is tried again next time.
    pub async fn get<E: Display>(
        &self,
        load: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Result<Arc<T>, CallError> {
        self.cell
            .get_or_try_init(|| async {
                let loaded = tokio::task::spawn_blocking(move || load().map_err(|e| e.to_string()))
                    .await
                    .map_err(|e| {
                        CallError::new(
                            ErrorCode::InternalError,
                            format!("loading the model {} stopped: {e}", self.name),
                        )
                    })?;
                loaded.map(Arc::new).map_err(|e| {
                    CallError::new(
                        ErrorCode::NotImplemented,
                        format!("the model {} does not load: {e}", self.name),
                    )
                })
            })
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn loads_once_for_concurrent_callers_and_retries_a_failure() {
        let lazy = Arc::new(LoadedOnFirstUse::<usize>::new("m"));
        let failed = lazy
            .get(|| Err::<usize, _>("no such file"))
            .await
            .unwrap_err();
        assert_eq!(failed.code, ErrorCode::NotImplemented);
        assert_eq!(failed.message, "the model m does not load: no such file");

        let loads = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..4)
            .map(|_| {
                let (lazy, loads) = (lazy.clone(), loads.clone());
                tokio::spawn(async move {
                    lazy.get(move || {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        Ok::<_, String>(loads.fetch_add(1, Ordering::SeqCst) + 7)
                    })
                    .await
                })
            })
            .collect();
        for caller in callers {
            assert_eq!(*caller.await.unwrap().unwrap(), 7);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }
}
