"""The database migrations, applied in order by `warp-sync db upgrade` (core/migrations.py). Installed as the
package `warp_sync_pipeline.sql` (setup.py), so a wheel carries them."""
