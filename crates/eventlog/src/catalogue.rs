//! The catalogue view kept current from product events: a follower applies every `product-`
//! event to the pure `Catalogue` projection. In memory — the catalogue of a small shop is small —
//! and rebuilt from the store at each start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use domain::catalogue::Catalogue;
use domain::product::ProductEvent;

use crate::{EventLog, Followed};

/// Prefix of the streams the catalogue is made of.
pub const PRODUCT_STREAM_PREFIX: &str = "product-";

#[derive(Clone, Default)]
pub struct CatalogueView {
    catalogue: Arc<RwLock<Catalogue>>,
    caught_up: Arc<AtomicBool>,
}

impl CatalogueView {
    /// Starts following the product streams from the start; the view fills as it goes.
    pub fn follow(log: &EventLog) -> (CatalogueView, tokio::task::JoinHandle<()>) {
        let view = CatalogueView::default();
        let mut follower = log.follow("catalogue", &[PRODUCT_STREAM_PREFIX], None);
        let task = tokio::spawn({
            let view = view.clone();
            async move {
                loop {
                    match follower.next().await {
                        Followed::Event(seen) => {
                            if let Some(event) = seen.decode::<ProductEvent>() {
                                view.catalogue
                                    .write()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .apply(&event);
                            }
                        }
                        Followed::CaughtUp => view.caught_up.store(true, Ordering::Release),
                    }
                }
            }
        });
        (view, task)
    }

    /// Whether the view has seen every product event stored when it started.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// Reads the catalogue.
    pub fn read<T>(&self, f: impl FnOnce(&Catalogue) -> T) -> T {
        f(&self.catalogue.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Applies an event the caller read itself (e.g. a product it looked up on a miss).
    pub fn apply(&self, event: &ProductEvent) {
        self.catalogue
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .apply(event);
    }
}
