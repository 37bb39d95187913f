"""Scene backends: one interface (`base.SceneBackend`), one implementation per way of reaching a scene."""
