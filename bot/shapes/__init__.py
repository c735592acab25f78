"""The embedded `shapes` text-to-image model and its world.

world.py     captioned pictures of one flat shape on a flat background (the training data)
analyser.py  picture -> (shape colour, shape, background colour, position); prompt -> what it asks for
model.py     the architecture: a tiny standard StableDiffusionPipeline (hand-set pixel VAE, UNet, CLIP)
train.py     `dreamgrid models train-shapes`: resumable training and the fp16 export to models/shapes
bench.py     `dreamgrid bench shapes --json`: prompt adherence, grid time, variation and upscale checks
lora.py      the shipped white-background LoRA, trained on the model
describer.py /describe's small CNN for this world: picture -> attributes -> four prompts

Imports no discord, no store, no service.
"""
