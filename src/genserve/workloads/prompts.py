"""A few prompts in the style of DiffusionDB (images) and VBench (videos), so traces read like real ones."""

IMAGE_PROMPTS = (
    "a lighthouse on a cliff at sunset, oil painting",
    "portrait of an old fisherman, dramatic lighting, 85mm photo",
    "a cozy reading nook with plants and warm lamps, interior design render",
    "cyberpunk street market in the rain, neon signs, cinematic",
    "a red fox in fresh snow, national geographic photo",
    "isometric tiny island with a castle, low poly, pastel colors",
    "a bowl of ramen on a wooden table, food photography",
    "watercolor map of an imaginary archipelago",
    "astronaut riding a horse on mars, digital art",
    "macro shot of a dew drop on a spider web at dawn",
)

VIDEO_PROMPTS = (
    "a golden retriever running on a beach, waves rolling in, slow motion",
    "time-lapse of clouds moving over a mountain range",
    "a paper boat floating down a rainy street gutter",
    "a hummingbird hovering near a red flower",
    "drone shot flying over a dense autumn forest",
    "a chef flipping vegetables in a wok with flames",
    "city traffic at night with light trails, static camera",
    "a panda eating bamboo in the forest",
    "waves crashing against rocks during a storm",
    "a person walking through a field of sunflowers",
)
