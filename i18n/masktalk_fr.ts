<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1" sourcelanguage="en" language="fr">
    <context>
        <name>MaskTalk</name>
        <message>
            <location filename="../plugin/diagnostics.py" line="47" />
            <location filename="../plugin/diagnostics.py" line="143" />
            <source>MaskTalk diagnostics</source>
            <translation>Diagnostic MaskTalk</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="49" />
            <source>engine python: {path}</source>
            <translation>python du moteur : {path}</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="51" />
            <location filename="../plugin/dock/train.py" line="205" />
            <source>engine not usable: {error}</source>
            <translation>moteur inutilisable : {error}</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="59" />
            <source>CUDA available: {available} (torch built for CUDA {version})</source>
            <translation>CUDA disponible : {available} (torch compilé pour CUDA {version})</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="62" />
            <source>GPU {index}: {name}, {memory} GB</source>
            <translation>GPU {index} : {name}, {memory} Go</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="64" />
            <source>GPU: none usable (the engine runs on the CPU)</source>
            <translation>GPU : aucun utilisable (le moteur tourne sur le CPU)</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="66" />
            <source>torch not importable: no device information</source>
            <translation>torch ne peut pas être importé : aucune information sur le matériel</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="95" />
            <source>Copy to clipboard</source>
            <translation>Copier dans le presse-papiers</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="140" />
            <source>collecting diagnostics…</source>
            <translation>collecte du diagnostic…</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="163" />
            <source>cannot prepare the engine set-up: {error}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="167" />
            <source>MaskTalk: looking for a GPU</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="175" />
            <source>Set up the MaskTalk engine</source>
            <translation>Installer le moteur MaskTalk</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="176" />
            <source>MaskTalk will create its own Python environment and install the engine's packages (PyTorch and friends, a few GB). QGIS stays usable meanwhile.</source>
            <translation>MaskTalk va créer son propre environnement Python et y installer les paquets du moteur (PyTorch et compagnie, quelques Go). QGIS reste utilisable pendant ce temps.</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="183" />
            <source>engine environment ready: {python}</source>
            <translation>environnement du moteur prêt : {python}</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="196" />
            <source>{path} is not a file; choose the python executable of the engine environment</source>
            <translation>{path} n'est pas un fichier ; choisissez l'exécutable python de l'environnement du moteur</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="206" />
            <source>none usable ({error})</source>
            <translation>aucun utilisable ({error})</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="207" />
            <source>engine Python: {python}</source>
            <translation>Python du moteur : {python}</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="219" />
            <source>none usable: {error}</source>
            <translation>aucun utilisable : {error}</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="221" />
            <source>MaskTalk engine Python</source>
            <translation>Python du moteur MaskTalk</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="223" />
            <source>The interpreter that runs the MaskTalk engine (it needs the packages of requirements.txt).</source>
            <translation>L'interpréteur qui exécute le moteur MaskTalk (il lui faut les paquets de requirements.txt).</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="224" />
            <source>Setting: {setting}</source>
            <translation>Réglage : {setting}</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="224" />
            <location filename="../plugin/dock/options.py" line="54" />
            <location filename="../plugin/dock/panel.py" line="162" />
            <source>automatic</source>
            <translation>automatique</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="225" />
            <source>In use: {python}</source>
            <translation>Utilisé : {python}</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="227" />
            <source>Choose…</source>
            <translation>Choisir…</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="228" />
            <source>Automatic</source>
            <translation>Automatique</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="234" />
            <source>Engine Python</source>
            <translation>Python du moteur</translation>
        </message>
        <message>
            <location filename="../plugin/diagnostics.py" line="241" />
            <source>MaskTalk engine set-up failed</source>
            <translation>L'installation du moteur MaskTalk a échoué</translation>
        </message>
        <message>
            <location filename="../plugin/dock/captions.py" line="25" />
            <source>3. Captions</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/captions.py" line="26" />
            <source>Caption the label polygons with S2M sentences</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/captions.py" line="32" />
            <source>What your labels say: one S2M sentence (where, what, how, how many) per class and chip.</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/captions.py" line="35" />
            <source>Chip</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/captions.py" line="37" />
            <source>Caption labels</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/captions.py" line="43" />
            <source>Captions of your labels appear here.</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/captions.py" line="70" />
            <source>… and {n} more in the captions layer</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/captions.py" line="71" />
            <source>No change class in the labelled area.</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/captions.py" line="72" />
            <source>{chips} chip(s), {n} sentence(s)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/captions.py" line="73" />
            <source>captions ready: {n} sentence(s) in {chips} chip(s)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="43" />
            <source>2. Classes</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="51" />
            <source>custom (edited)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="60" />
            <source>Class id in the change raster</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="61" />
            <source>Double-click a cell to edit it; a colour opens the colour picker</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="64" />
            <source>Add</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="65" />
            <source>Remove</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="66" />
            <source>Load…</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="67" />
            <source>Save…</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="68" />
            <source>Load a class schema JSON file</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="69" />
            <source>Save these classes as a schema JSON file (for the command line)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="74" />
            <source>Preset</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="109" />
            <source>valid classes ({error})</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="156" />
            <source>{n} change classes (+ no change = 0)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="169" />
            <source>Class colour</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="195" />
            <source>cannot save the classes to {path}: {error}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="197" />
            <source>classes saved to {path}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="200" />
            <location filename="../plugin/dock/classes.py" line="205" />
            <source>Class schema (*.json)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="200" />
            <source>Load classes</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/classes.py" line="205" />
            <source>Save classes</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/common.py" line="36" />
            <source>Cancel</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/common.py" line="60" />
            <source>starting…</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/common.py" line="154" />
            <source>cannot {kind} yet; missing: {what}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/common.py" line="159" />
            <location filename="../plugin/dock/panel.py" line="287" />
            <source>{kind}: {error}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/common.py" line="170" />
            <source>Missing: </source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="32" />
            <source>Map canvas</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="32" />
            <source>Whole before layer</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="33" />
            <source>Area of interest (AOI polygons)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="47" />
            <source>5. Detect</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="48" />
            <source>Detect changes between before and after with the chosen model</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="58" />
            <source>Choose a model folder (a training run or a checkpoint folder)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="63" />
            <source>Where to detect; 'Area of interest' passes the AOI polygons as a mask: nothing is detected outside them</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="68" />
            <source>Folder for the detections (a GeoTIFF and a GeoPackage per run); empty = 'masktalk' beside the project</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="71" />
            <source>Minimum area (m²)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="71" />
            <source>Threshold</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="72" />
            <location filename="../plugin/processing/algorithms.py" line="601" />
            <source>Detect changes</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="76" />
            <location filename="../plugin/dock/train.py" line="73" />
            <source>Model</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="77" />
            <location filename="../plugin/processing/algorithms.py" line="617" />
            <source>Extent</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="78" />
            <source>Output folder</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="123" />
            <source>Model folder</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="140" />
            <source>a trained model</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="144" />
            <source>an AOI layer (or choose another extent)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="146" />
            <location filename="../plugin/dock/layers.py" line="196" />
            <source>selected AOI features (or untick 'selected features only')</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="172" />
            <source>MaskTalk: replace the detection?</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="173" />
            <source>These outputs exist already:
{names}

Replace them? They are replaced only when the new detection has finished.</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="177" />
            <source>not started: the outputs exist</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="189" />
            <source>detections</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="209" />
            <source>done</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="209" />
            <location filename="../plugin/dock/detect.py" line="210" />
            <source>{n} changed pixel(s)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/detect.py" line="210" />
            <source>changes detected</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="51" />
            <source>1. Layers</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="52" />
            <source>Image before the change (any raster layer: file, WMS/XYZ, virtual)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="53" />
            <source>Image after the change; it is aligned on the before image's grid</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="57" />
            <source>Polygons of change you drew, with a class attribute</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="59" />
            <source>Attribute holding the class (name or id) of each label polygon</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="60" />
            <source>New label layer…</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="65" />
            <source>Optional polygons: in Train the labelled area (unlabelled pixels inside are 'no change'), in Detect (extent 'Area of interest') the only place changes are looked for</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="67" />
            <source>selected features only</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="69" />
            <source>Use only the AOI layer's selected polygons</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="84" />
            <source>Before</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="85" />
            <source>After</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="86" />
            <source>Labels</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="87" />
            <location filename="../plugin/processing/algorithms.py" line="541" />
            <source>Class field</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="88" />
            <source>Area of interest</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="89" />
            <source>Resolution</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="155" />
            <source>the before image's pixel size</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="159" />
            <source>the after image's pixel size</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="167" />
            <source>the pixel size model {name} was trained at</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="182" />
            <source>a before raster</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="185" />
            <source>an after raster</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="187" />
            <source>an after raster other than the before raster</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="190" />
            <source>a label layer (or press New label layer…)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="192" />
            <source>the class field of the label layer</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="194" />
            <source>at least one label polygon</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="198" />
            <source>a resolution (neither image has a pixel size of its own)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="249" />
            <source>{value} ({source}): the engine works on its grid</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="251" />
            <source>automatic: {value}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="252" />
            <source>empty = {value}, {source}; web layers are exported at this pixel size</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="255" />
            <source>layer</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="255" />
            <source>pixel size in {crs} units</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="256" />
            <source>neither image has a pixel size of its own: give the pixel size to export them at</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/layers.py" line="260" />
            <source>Pixel size (in the before layer's CRS units) at which web and service layers are exported for the engine</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/options.py" line="64" />
            <source>default</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/options.py" line="223" />
            <source>More options</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="119" />
            <source>Show MaskTalk log</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="121" />
            <source>Open the Log Messages panel; MaskTalk's details are in its 'MaskTalk' tab</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="164" />
            <source>automatic (adapted to the labelled area)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="164" />
            <source>automatic (min(128, chip))</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="166" />
            <source>the model's (automatic)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="167" />
            <source>automatic (the model's chip + overlap)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="168" />
            <source>the whole labelled area</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="208" />
            <source>the running {kind} task to finish</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="234" />
            <location filename="../plugin/processing/algorithms.py" line="626" />
            <source>GeoPackage (*.gpkg)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="234" />
            <source>New label layer</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="242" />
            <source>fix the classes first: {error}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="261" />
            <source>label layer {path} created: draw polygons and pick their class, then save the edits</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="282" />
            <source>a {kind} task is running already</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="299" />
            <source>{task} started</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="317" />
            <source>{kind} finished in {s} s</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="324" />
            <source>{kind} failed: {message}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="327" />
            <source>failed: {message}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="330" />
            <source> (the last checkpoint is kept in the run folder)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="331" />
            <source>{kind} cancelled</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="334" />
            <location filename="../plugin/runner.py" line="363" />
            <source>cancelled</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="342" />
            <source>cancelling…</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="356" />
            <source>engine not available: {error}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="393" />
            <source>no weights found</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="393" />
            <source>weights found</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/panel.py" line="484" />
            <source>the project's MaskTalk classes are unusable ({error}); showing the {preset} preset</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="33" />
            <source>Backbone</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="33" />
            <source>LoRA rank</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="33" />
            <source>Text encoder</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="33" />
            <source>Weights</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="34" />
            <source>Batch</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="34" />
            <source>Chip (px)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="34" />
            <source>Stage 2 share</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="34" />
            <source>Steps</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="35" />
            <location filename="../plugin/processing/algorithms.py" line="519" />
            <location filename="../plugin/processing/algorithms.py" line="596" />
            <source>Device</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="51" />
            <source>4. Train</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="52" />
            <source>Train a change model on the labels (two stages, counted in optimizer steps)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="57" />
            <location filename="../plugin/dock/train.py" line="207" />
            <source>asking the engine…</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="62" />
            <source>Folder where every training run gets its own sub-folder</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="64" />
            <source>automatic (date and time)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="65" />
            <source>Train</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="73" />
            <source>Classes</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="73" />
            <source>Date</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="73" />
            <source>Kept model's scores</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="79" />
            <source>Refresh</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="82" />
            <source>Runs folder</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="83" />
            <source>Run name</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="85" />
            <source>Loss</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="86" />
            <source>Validation</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="88" />
            <source>Trained models</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="118" />
            <source>a runs folder</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="152" />
            <source>run folder: {path}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="158" />
            <source>{loss} (step {step}, stage {stage})</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="166" />
            <source>model saved in {path}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="168" />
            <source>kept model: {scores}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="173" />
            <source>training finished: {name}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="207" />
            <source>engine not asked yet (shown when the dock opens)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="210" />
            <source>GPU: {name} ({memory} GB), CUDA {version}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="212" />
            <source>CPU only: no CUDA GPU usable by the engine's PyTorch</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock/train.py" line="214" />
            <source>training would fail; choose auto or cpu</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock_widgets.py" line="40" />
            <source>Category (plural)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock_widgets.py" line="40" />
            <source>Colour</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock_widgets.py" line="40" />
            <source>Name</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock_widgets.py" line="40" />
            <source>Type</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock_widgets.py" line="91" />
            <source>changed</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock_widgets.py" line="91" />
            <source>class {n}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock_widgets.py" line="91" />
            <source>objects</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock_widgets.py" line="128" />
            <source>Plural noun used in captions, e.g. 'buildings'</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock_widgets.py" line="192" />
            <source>backbone: {name}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock_widgets.py" line="194" />
            <source>{n} optimizer steps</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock_widgets.py" line="196" />
            <source>kept model: step {step} ({rule})</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock_widgets.py" line="362" />
            <source>cannot create the label layer {path}: {message}; choose a folder you can write to</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/dock_widgets.py" line="365" />
            <source>the label layer {path} was written but QGIS cannot open it</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/engine_tasks.py" line="52" />
            <source>unknown ({error})</source>
            <translation>inconnu ({error})</translation>
        </message>
        <message>
            <location filename="../plugin/engine_tasks.py" line="70" />
            <source>MaskTalk: set up the engine environment</source>
            <translation>MaskTalk : installation de l'environnement du moteur</translation>
        </message>
        <message>
            <location filename="../plugin/engine_tasks.py" line="99" />
            <source>engine set-up failed</source>
            <translation>l'installation du moteur a échoué</translation>
        </message>
        <message>
            <location filename="../plugin/engine_tasks.py" line="114" />
            <source>MaskTalk: diagnostics</source>
            <translation>MaskTalk : diagnostic</translation>
        </message>
        <message>
            <location filename="../plugin/environment.py" line="118" />
            <source>{variable}={value} does not exist; point it at the engine's python executable</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/environment.py" line="126" />
            <source>the engine Python set in the MaskTalk settings ({path}) does not exist; choose another interpreter with MaskTalk &gt; Engine Python…, or set it to Automatic there to let MaskTalk find its own environment</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/environment.py" line="143" />
            <source>no engine Python found (tried {tried}); run MaskTalk &gt; Set up engine… to create it, or choose an interpreter that has the packages of requirements.txt with MaskTalk &gt; Engine Python… (or {variable})</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/environment.py" line="261" />
            <source>engine environment: {venv}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/environment.py" line="261" />
            <source>torch build: {build}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/environment.py" line="278" />
            <source>no Python interpreter found to create the engine environment; install Python 3 and retry</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/environment.py" line="310" />
            <source>create the environment</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/environment.py" line="315" />
            <source>install PyTorch (CUDA {version} build)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/environment.py" line="316" />
            <source>install PyTorch (CPU build)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/environment.py" line="321" />
            <source>install the engine's packages</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/environment.py" line="366" />
            <source>engine set-up cancelled; run it again to finish</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/environment.py" line="369" />
            <source>engine set-up failed at '{step}' (exit code {code}).</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/environment.py" line="370" />
            <location filename="../plugin/runner.py" line="94" />
            <source>command: {command}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/environment.py" line="375" />
            <source>engine environment ready</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/environment.py" line="397" />
            <source>could not start {program}: {error}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="133" />
            <source>cannot write the {what} to {folder}: {reason}; choose another folder</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="235" />
            <source>{name}: its data provider cannot be read for export</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="247" />
            <source>{name}: exporting {width}x{height} px failed (QgsRasterFileWriter error {err}); check that the layer draws for this extent, or save it as a GeoTIFF first</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="281" />
            <source>{name}: could not write {path}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="335" />
            <location filename="../plugin/layers.py" line="527" />
            <source>{name}: {path} does not exist</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="339" />
            <location filename="../plugin/layers.py" line="531" />
            <source>{name}: the layer is missing or invalid</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="348" />
            <source>{name}: layer '{layer}' is a {provider} service without a fixed size; choose an extent (map canvas, AOI layer) to export</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="358" />
            <source>{name}: the requested extent does not overlap layer '{layer}'</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="362" />
            <source>{name}: layer '{layer}' has no native resolution; give a resolution (pixel size in {units}) for the export</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="364" />
            <source>layer units</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="371" />
            <source>{name}: exporting layer '{layer}' at {res} units/px would make {width}x{height} px (limit {limit} a side); choose a smaller extent or a coarser resolution</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="379" />
            <source>{name}: the data provider of layer '{layer}' cannot be copied for export</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="455" />
            <source>{name}: could not export to {path}: {message}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="535" />
            <source>{name}: layer '{layer}' has no field '{field}' (fields: {fields})</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="536" />
            <source>none</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="542" />
            <source>{name}: layer '{layer}' has no selected features; select some or untick 'selected features only'</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="545" />
            <source>{name}: layer '{layer}' has no features</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="638" />
            <source>labels: the reference raster for rasterising the labels is invalid</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="647" />
            <source>labels: layer '{layer}' is a {provider} service without a pixel size; give a resolution (pixel size in {units}) to rasterise the label polygons</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="655" />
            <source>labels: layer '{layer}' is in a geographic CRS ({crs}); give a reference raster (the before image) so the labels are rasterised on its grid</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="659" />
            <source>labels: give a reference raster or a resolution to rasterise the label polygons</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="662" />
            <location filename="../plugin/layers.py" line="665" />
            <source>labels: layer '{layer}' has no extent (no features?)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="673" />
            <source>labels: rasterising at {res} units/px would make {width}x{height} px; use a coarser resolution</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="702" />
            <source>labels: cannot read {path}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="708" />
            <location filename="../plugin/layers.py" line="781" />
            <location filename="../plugin/tasks.py" line="386" />
            <source>labels: layer '{layer}' has no field '{field}'</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="721" />
            <source>feature {fid} of layer '{layer}'</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="723" />
            <source>labels: {error}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="734" />
            <source>labels: layer '{layer}' has no polygon with a class in field '{field}'</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="793" />
            <source>{path}: not a raster QGIS can open</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="834" />
            <source>the change raster {path} cannot be opened</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="971" />
            <location filename="../plugin/layers.py" line="955" />
            <source>captions</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/layers.py" line="983" />
            <source>cannot write the captions to {path}: {message}; choose another output folder</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/main.py" line="62" />
            <source>Show the MaskTalk change-detection dock</source>
            <translation>Afficher le panneau de détection de changements MaskTalk</translation>
        </message>
        <message>
            <location filename="../plugin/main.py" line="77" />
            <source>Set up engine…</source>
            <translation>Installer le moteur…</translation>
        </message>
        <message>
            <location filename="../plugin/main.py" line="78" />
            <source>Create MaskTalk's own Python environment and install the engine (PyTorch, CUDA when there is a GPU)</source>
            <translation>Créer l'environnement Python de MaskTalk et y installer le moteur (PyTorch, CUDA si un GPU est présent)</translation>
        </message>
        <message>
            <location filename="../plugin/main.py" line="80" />
            <source>Engine Python…</source>
            <translation>Python du moteur…</translation>
        </message>
        <message>
            <location filename="../plugin/main.py" line="81" />
            <source>Choose the Python interpreter that runs the engine, or let MaskTalk find it (automatic)</source>
            <translation>Choisir l'interpréteur Python qui exécute le moteur, ou laisser MaskTalk le trouver (automatique)</translation>
        </message>
        <message>
            <location filename="../plugin/main.py" line="83" />
            <source>Diagnostics</source>
            <translation>Diagnostic</translation>
        </message>
        <message>
            <location filename="../plugin/main.py" line="84" />
            <source>Versions, devices and weights of the engine, for bug reports (copyable)</source>
            <translation>Versions, matériel et poids du moteur, pour les rapports de bogue (copiables)</translation>
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="300" />
            <source>Class schema preset</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="302" />
            <source>Class schema file (overrides the preset)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="326" />
            <source>AOI: no polygon layer given</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="353" />
            <source>{name}: no raster layer given</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="366" />
            <location filename="../plugin/processing/algorithms.py" line="373" />
            <location filename="../plugin/processing/algorithms.py" line="483" />
            <location filename="../plugin/runner.py" line="109" />
            <location filename="../plugin/runner.py" line="361" />
            <source>cancelled by the user</source>
            <translation>annulé par l'utilisateur</translation>
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="369" />
            <source>exporting {name} to {path}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="405" />
            <source>cancelled by the user: {reason}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="418" />
            <source>Chip size (pixels; empty = the whole raster as one chip)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="419" />
            <source>Template seed</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="423" />
            <source>Caption change labels</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="426" />
            <source>Turns change labels into S2M text: for each chip with change, one quadruple per class (direction, quantity, category, type) rendered with the paper's templates. LABELS is a class raster (values = class ids) or label polygons with a class field (names or ids), rasterised on the REFERENCE raster's grid (or at RESOLUTION). OUTPUT: one polygon per chip with its sentences.</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="435" />
            <source>Change labels (class raster or polygons)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="437" />
            <source>Class field (polygon labels)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="438" />
            <source>Reference raster grid (polygon labels)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="440" />
            <source>Pixel size without a reference (layer units)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="444" />
            <source>Label value map (e.g. 255:1)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="445" />
            <source>Captions</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="446" />
            <source>Captions as JSON</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="446" />
            <source>JSON files (*.json)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="448" />
            <source>Captioned chips</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="453" />
            <source>LABELS: no layer given</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="472" />
            <source>LABELS: a class raster must be a file (GeoTIFF or PNG)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="479" />
            <source>rasterising the label polygons</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="510" />
            <source>Backbone (empty = DINOv3 when its weights are found, else EfficientNet-Lite0)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="511" />
            <source>Backbone weights folder</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="512" />
            <source>Chip size (pixels)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="513" />
            <source>Optimizer steps (empty = adapted to the labelled area)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="514" />
            <source>Stage 1 epochs (instead of steps)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="515" />
            <source>Stage 2 epochs (instead of steps)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="516" />
            <location filename="../plugin/processing/algorithms.py" line="595" />
            <source>Batch size</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="517" />
            <source>LoRA rank (DINOv3 only; 0 = full fine-tuning)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="518" />
            <source>Text encoder of stage 2</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="520" />
            <source>Random seed</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="524" />
            <source>Train change model</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="527" />
            <source>Fine-tunes an S2M change model on a before/after raster pair and label polygons (class field with schema class names or ids): stage 1 visual, stage 2 with text-guided alignment. The engine's defaults work as they are; every option shows the engine's own help. The AOI polygons (or their selected features) bound the labelled area. Writes a run folder (by default masktalk/runs/ beside the project) with best/ and last/ checkpoints, metrics and a plot. Cancel keeps the last checkpoint.</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="537" />
            <location filename="../plugin/processing/algorithms.py" line="614" />
            <source>Before raster</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="538" />
            <location filename="../plugin/processing/algorithms.py" line="615" />
            <source>After raster</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="539" />
            <source>Label polygons</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="543" />
            <source>Labelled area (AOI)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="547" />
            <location filename="../plugin/processing/algorithms.py" line="620" />
            <source>Pixel size for web/virtual rasters (layer units)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="551" />
            <source>Run folder</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="552" />
            <source>Best checkpoint</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="553" />
            <source>Last checkpoint</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="558" />
            <source>LABELS: no polygon layer given</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="562" />
            <source>training run</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="589" />
            <source>Change threshold (probability 0-1; empty = the model's, else 0.5 for two classes, the most probable class for more)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="591" />
            <source>Smallest change polygon kept (square metres)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="592" />
            <source>Test-time augmentation (flips: the model averaged over 4 flips, 4x the time)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="593" />
            <source>Chip size (pixels; empty = the engine's choice for the model)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="594" />
            <source>Overlap (pixels)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="597" />
            <source>Runtime</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="604" />
            <source>Runs a trained MaskTalk model over a before/after raster pair (any raster layer; web and virtual layers are exported for the extent at the given pixel size). Writes a change raster (class band with the schema's colours + confidence) and a GeoPackage with 'changes' polygons and chip 'captions' that carry S2M sentences (by default in masktalk/detections/ beside the project); both are loaded and styled. The AOI is a mask: nothing is detected outside its polygons (or its selected features).</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="616" />
            <source>Model (run or checkpoint folder)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="618" />
            <source>Area of interest (polygon mask)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="624" />
            <source>Change raster</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="626" />
            <source>Change polygons and captions</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/algorithms.py" line="645" />
            <location filename="../plugin/tasks.py" line="488" />
            <location filename="../plugin/tasks.py" line="490" />
            <source>detection</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/processing/provider.py" line="26" />
            <source>MaskTalk change detection (S2M)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/runner.py" line="96" />
            <source>exit code: {code}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/runner.py" line="100" />
            <source>engine stderr (last lines):</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/runner.py" line="161" />
            <source>the engine Python {python} lacks the package '{package}': its environment is incomplete (an interrupted or failed set-up) or is not an engine environment; run MaskTalk &gt; Set up engine… to install the engine's packages, or choose another interpreter with MaskTalk &gt; Engine Python…</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/runner.py" line="169" />
            <source>the engine was killed (exit code {code}), most likely by the operating system because it ran out of memory; try a smaller chip size or batch size, a smaller extent, or close other programs</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/runner.py" line="310" />
            <source>could not start the engine ({python}): {error}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/runner.py" line="323" />
            <source>the engine Python {python} does not exist; set up the engine (MaskTalk menu &gt; Set up engine…) or choose an existing interpreter with MaskTalk &gt; Engine Python…</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/runner.py" line="357" />
            <source>the engine was stopped because QGIS is closing or MaskTalk was unloaded</source>
            <translation>le moteur a été arrêté car QGIS se ferme ou MaskTalk a été déchargé</translation>
        </message>
        <message>
            <location filename="../plugin/runner.py" line="359" />
            <source>the engine was stopped: it ran past its time limit ({seconds:.0f} s)</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/runner.py" line="363" />
            <source>the engine stopped: {message}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/runner.py" line="370" />
            <source>the engine reported an error</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/runner.py" line="375" />
            <source>the engine crashed (killed by signal {signal})</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/runner.py" line="376" />
            <source>no message</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/runner.py" line="378" />
            <source>the engine ended without a result: {last}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/runner.py" line="379" />
            <source>the engine failed (exit code {code}): {last}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/tasks.py" line="219" />
            <source>exporting the inputs</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/tasks.py" line="219" />
            <source>exporting {name}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/tasks.py" line="273" />
            <source>the run finished but its outputs could not be added: {error}</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/tasks.py" line="283" />
            <source>{task}: cancelled</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/tasks.py" line="286" />
            <source>the task stopped without a result</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/tasks.py" line="374" />
            <source>MaskTalk: caption labels</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/tasks.py" line="394" />
            <source>labels: a class raster must be a file (GeoTIFF or PNG), not a rendered service</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/tasks.py" line="418" />
            <source>the captions were written to {path} but QGIS cannot open them</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/tasks.py" line="420" />
            <source>MaskTalk captions</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/tasks.py" line="450" />
            <source>MaskTalk: train change model</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/tasks.py" line="455" />
            <source>train: choose an output folder for the run</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/tasks.py" line="482" />
            <source>MaskTalk: detect changes</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/tasks.py" line="487" />
            <source>detect: choose an output GeoTIFF</source>
            <translation type="unfinished" />
        </message>
        <message>
            <location filename="../plugin/tasks.py" line="540" />
            <source>MaskTalk: read the engine's options</source>
            <translation type="unfinished" />
        </message>
    </context>
</TS>
