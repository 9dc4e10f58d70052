//! Network driver: lifecycle, forward-mode table, reconcile.
