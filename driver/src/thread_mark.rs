//! A thread-local mark that holds for the length of one call.

use std::cell::Cell;
use std::thread::LocalKey;

/// Run `f` with `key` set to `value`; the previous value is back afterwards,
/// even if `f` panics.
pub(crate) fn marked<T: Copy + 'static, R>(
    key: &'static LocalKey<Cell<T>>,
    value: T,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore<T: Copy + 'static>(&'static LocalKey<Cell<T>>, T);
    impl<T: Copy + 'static> Drop for Restore<T> {
        fn drop(&mut self) {
            self.0.with(|c| c.set(self.1));
        }
    }
    let _restore = Restore(key, key.with(|c| c.replace(value)));
    f()
}
